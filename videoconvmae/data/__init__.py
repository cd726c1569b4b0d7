"""Video data: Kinetics-400 / "path label" lists and SSV2 annotations, decord / PyAV decoding,
clip sampling, video transforms, clip and multi-view datasets, a synthetic motion dataset.

Importing this package registers the "kinetics" and "ssv2" datasets with ``common.data``.
"""
from . import build  # noqa: F401  (registers the datasets)
from .annotations import (
    AnnotationError,
    LabeledVideo,
    read_folder_per_class,
    read_path_label_list,
    read_ssv2_json,
)
from .datasets import MultiViewVideoDataset, VideoClipDataset
from .decoders import DecodedVideo, DecodeError, VideoDecoder, build_decoder
from .frame_sampling import EvenlySpacedClipSampler, build_clip_chooser
from .synthetic import make_synthetic_video_dataset
from .transforms import CentreViewTransform, FinetuneVideoTransform, MultiViewTransform, PretrainVideoTransform

__all__ = [
    "AnnotationError",
    "CentreViewTransform",
    "DecodeError",
    "DecodedVideo",
    "EvenlySpacedClipSampler",
    "FinetuneVideoTransform",
    "LabeledVideo",
    "MultiViewTransform",
    "MultiViewVideoDataset",
    "PretrainVideoTransform",
    "VideoClipDataset",
    "VideoDecoder",
    "build_clip_chooser",
    "build_decoder",
    "make_synthetic_video_dataset",
    "read_folder_per_class",
    "read_path_label_list",
    "read_ssv2_json",
]
