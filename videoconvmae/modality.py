"""The video modality, registered with ``common.modality`` (entry point ``video`` in setup.py).

Loading this module registers the video models and the "kinetics" and "ssv2" datasets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence

import torch
from fvcore.common.config import CfgNode

from common.modality import Modality, synthetic_classes
from videoconvmae import data as _data  # noqa: F401  (registers the datasets)
from videoconvmae.data.annotations import VIDEO_EXTENSIONS, LabeledVideo
from videoconvmae.data.build import build_video_dataset
from videoconvmae.data.datasets import MultiViewVideoDataset
from videoconvmae.data.decoders import build_decoder
from videoconvmae.data.windows import SlidingWindows
from videoconvmae.data.synthetic import write_motion_dataset
from videoconvmae.models import MODALITY, video_geometry

# The one synthetic recipe (demo, `python tools/pretrain.py` with no arguments, docs): class = the
# direction in which a plain bright square slides over a smooth dim background (docs/demo.md).
SYNTHETIC_RECIPE = dict(clips_per_class=(48, 8, 16), height=80, width=112, num_frames=40, fps=30, seed=0,
                        background="smooth", square="plain", square_size=0.4)


def video_model_kwargs(cfg: CfgNode) -> Dict[str, Any]:
    """The video models' extra overrides: the clip length."""
    return {"num_frames": cfg.DATA.NUM_FRAMES}


def load_video_clip(path: Path, cfg: CfgNode, crop_size: int) -> torch.Tensor:
    """The centre clip of the video at ``path`` as the model sees it: (1, C, T, S, S), normalised,
    ``DATA.NUM_FRAMES`` frames ``DATA.SAMPLING_RATE`` apart, centre square crop of ``crop_size``."""
    from videoconvmae.data import CentreViewTransform, build_clip_chooser, build_decoder

    data = cfg.DATA
    decoder = build_decoder(data.DECODING_BACKEND, fallback=data.DECODE_FALLBACK, timeout_s=data.DECODE_TIMEOUT)
    choose = build_clip_chooser(mode=data.SAMPLING_MODE, training=False, num_frames=data.NUM_FRAMES,
                                stride=data.SAMPLING_RATE, num_clips=1)
    clip = decoder.decode(str(path), choose).clip(0)
    return CentreViewTransform(crop_size=crop_size, mean=data.MEAN, std=data.STD)(clip)[None]


def video_files_dataset(cfg: CfgNode, paths: Sequence[str]) -> MultiViewVideoDataset:
    """The test job's multi-view dataset (TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views,
    one decode per video) over ``paths``, labels -1."""
    return build_video_dataset(cfg, "test", [LabeledVideo(str(p), -1) for p in paths], flip=False)


def video_sliding_windows(path: str, cfg: CfgNode, *, window_frames: int, window_stride: int,
                          batch_size: int) -> SlidingWindows:
    """Windows of ``window_frames`` frames ``window_stride`` apart, frames ``DATA.SAMPLING_RATE``
    source frames apart, centre view at ``DATA.TEST_CROP_SIZE``."""
    data = cfg.DATA
    decoder = build_decoder(data.DECODING_BACKEND, fallback=data.DECODE_FALLBACK, num_threads=data.DECODE_THREADS,
                            timeout_s=data.DECODE_TIMEOUT)
    return SlidingWindows(str(path), decoder=decoder, crop_size=data.TEST_CROP_SIZE, mean=data.MEAN, std=data.STD,
                          window_frames=window_frames, window_stride=window_stride,
                          sampling_rate=data.SAMPLING_RATE, batch_size=batch_size)


def make_synthetic_videos(folder: Path, cfg: CfgNode) -> None:
    """The motion dataset in the layout of ``DATA.DATASET`` (kinetics or ssv2) in ``folder``."""
    write_motion_dataset(Path(folder), cfg.DATA.DATASET.lower(), num_classes=synthetic_classes(cfg), progress=True,
                         **SYNTHETIC_RECIPE)


VIDEO = Modality(
    name=MODALITY,
    input_key="video",
    input_ndim=5,
    channel_dim=-4,
    geometry=video_geometry,
    model_kwargs=video_model_kwargs,
    load_input=load_video_clip,
    file_suffixes=VIDEO_EXTENSIONS,
    make_synthetic_data=make_synthetic_videos,
    datasets=("kinetics", "ssv2"),
    file_dataset=video_files_dataset,
    sliding_windows=video_sliding_windows,
)
