"""Config -> video datasets: registers "kinetics" and "ssv2" in the common dataset registry.

This is the only module of the video data package that reads the config.
"""
import logging
import os
from typing import Callable, List

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from common.data.registry import register_dataset
from common.errors import DataNotFoundError

from .annotations import AnnotationError, LabeledVideo, read_folder_per_class, read_path_label_list, read_ssv2_json
from .datasets import MultiViewVideoDataset, VideoClipDataset
from .decoders import build_decoder
from .frame_sampling import build_clip_chooser
from .synthetic import SSV2_LABELS_FILE
from .transforms import CentreViewTransform, FinetuneVideoTransform, MultiViewTransform, PretrainVideoTransform

logger = logging.getLogger(__name__)

SPLIT_OF_MODE = {"pretrain": "train", "finetune": "train", "val": "val", "test": "test"}
# SSV2's official test labels are not public: val and test both use the validation split. Each
# split file is found under its official name or the short one.
SSV2_SPLIT_FILES = {
    "train": ("something-something-v2-train.json", "train.json"),
    "val": ("something-something-v2-validation.json", "validation.json"),
    "test": ("something-something-v2-validation.json", "validation.json"),
}


def list_or_folder_videos(data_dir: str, split: str, *, prefix: str, separator: str) -> List[LabeledVideo]:
    """``data_dir/<split>.csv`` ("path label" lines) if it exists, else the class folders of
    ``data_dir/<split>/``."""
    list_file = os.path.join(data_dir, f"{split}.csv")
    if os.path.isfile(list_file):
        return read_path_label_list(list_file, prefix=prefix, separator=separator)
    folder = os.path.join(data_dir, split)
    if os.path.isdir(folder):
        return read_folder_per_class(folder)
    raise DataNotFoundError(f"no {split} split in DATA.PATH_TO_DATA_DIR: neither {list_file} nor the folder "
                            f"{folder} exists")


def ssv2_videos(data_dir: str, split: str, *, prefix: str, separator: str) -> List[LabeledVideo]:
    """SSV2 json annotations when ``data_dir`` holds the labels json (videos in ``prefix``, or
    in ``data_dir``), else the list / folder forms."""
    labels_file = os.path.join(data_dir, SSV2_LABELS_FILE)
    if not os.path.isfile(labels_file):
        return list_or_folder_videos(data_dir, split, prefix=prefix, separator=separator)
    return read_ssv2_json(labels_file, ssv2_split_file(data_dir, split), video_dir=prefix or data_dir)


def ssv2_split_file(data_dir: str, split: str) -> str:
    """The SSV2 json of ``split`` in ``data_dir`` under its official or short name;
    FileNotFoundError naming every name looked for."""
    candidates = [os.path.join(data_dir, name) for name in SSV2_SPLIT_FILES[split]]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"no SSV2 {split} split in {data_dir}: looked for {', '.join(SSV2_SPLIT_FILES[split])}")


def check_labels(videos: List[LabeledVideo], num_classes: int, source: str) -> None:
    """Fails at start-up when a label is outside [0, num_classes)."""
    bad = [video for video in videos if not 0 <= video.label < num_classes]
    if bad:
        raise AnnotationError(f"{bad[0].source or source}: label {bad[0].label} of {bad[0].path} is not in "
                              f"[0, MODEL.NUM_CLASSES={num_classes})")


def build_train_transform(cfg: CfgNode, mode: str, flip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The pretraining or finetuning clip transform of ``cfg``."""
    data = cfg.DATA
    if mode == "pretrain":
        return PretrainVideoTransform(
            crop_size=data.TRAIN_CROP_SIZE,
            crop=data.PRETRAIN_CROP,
            scales=data.MULTISCALE_CROP_SCALES,
            max_distort=data.MULTISCALE_MAX_DISTORT,
            area_range=data.PRETRAIN_JITTER_SCALES_RELATIVE,
            aspect_range=data.TRAIN_JITTER_ASPECT_RELATIVE,
            flip=flip,
            mean=data.MEAN,
            std=data.STD,
            normalize=False,  # uint8 to the consumer: see common.data.collate
        )
    aug = cfg.AUG
    return FinetuneVideoTransform(
        crop_size=data.TRAIN_CROP_SIZE,
        area_range=data.TRAIN_JITTER_SCALES_RELATIVE,
        aspect_range=data.TRAIN_JITTER_ASPECT_RELATIVE,
        flip=flip,
        rand_augment=(aug.RAND_AUGMENT_MAGNITUDE, aug.RAND_AUGMENT_NUM_OPS, aug.RAND_AUGMENT_MSTD) if aug.ENABLE else None,
        erase_prob=aug.RE_PROB if aug.ENABLE else 0.0,
        mean=data.MEAN,
        std=data.STD,
    )


def build_video_dataset(cfg: CfgNode, mode: str, videos: List[LabeledVideo], *, flip: bool) -> Dataset:
    """The dataset of ``mode`` over ``videos``: clips for pretrain/finetune/val, multi-view for test."""
    data = cfg.DATA
    decoder = build_decoder(
        data.DECODING_BACKEND, fallback=data.DECODE_FALLBACK, num_threads=data.DECODE_THREADS, timeout_s=data.DECODE_TIMEOUT
    )
    training = mode in ("pretrain", "finetune")
    num_clips = cfg.TEST.NUM_ENSEMBLE_VIEWS if mode == "test" else 1
    choose = build_clip_chooser(
        mode=data.SAMPLING_MODE, training=training, num_frames=data.NUM_FRAMES, stride=data.SAMPLING_RATE, num_clips=num_clips
    )
    if mode == "test":
        views = MultiViewTransform(crop_size=data.TEST_CROP_SIZE, num_crops=cfg.TEST.NUM_SPATIAL_CROPS,
                                   mean=data.MEAN, std=data.STD, normalize=False)
        return MultiViewVideoDataset(
            videos=videos, decoder=decoder, choose_clips=choose, transform=views, num_clips=num_clips, num_frames=data.NUM_FRAMES
        )
    if training:
        transform = build_train_transform(cfg, mode, flip)
    else:
        transform = CentreViewTransform(crop_size=data.TEST_CROP_SIZE, mean=data.MEAN, std=data.STD)
    return VideoClipDataset(
        videos=videos,
        decoder=decoder,
        choose_clip=choose,
        transform=transform,
        num_views=data.REPEATED_SAMPLING if training else 1,
        max_retries=data.MAX_BAD_FILE_RETRIES,
        normalization=(tuple(data.MEAN), tuple(data.STD)) if mode == "pretrain" else None,
    )


@register_dataset("kinetics")
def build_kinetics(cfg: CfgNode, mode: str) -> Dataset:
    """Kinetics-400 or any "path label" list / folder-per-class video dataset."""
    data = cfg.DATA
    split = SPLIT_OF_MODE[mode]
    videos = list_or_folder_videos(data.PATH_TO_DATA_DIR, split, prefix=data.PATH_PREFIX, separator=data.PATH_LABEL_SEPARATOR)
    check_labels(videos, cfg.MODEL.NUM_CLASSES, f"{data.PATH_TO_DATA_DIR} ({split})")
    return build_video_dataset(cfg, mode, videos, flip=data.RANDOM_FLIP)


@register_dataset("ssv2")
def build_ssv2(cfg: CfgNode, mode: str) -> Dataset:
    """Something-Something-v2; never flipped (its classes distinguish left from right)."""
    data = cfg.DATA
    split = SPLIT_OF_MODE[mode]
    videos = ssv2_videos(data.PATH_TO_DATA_DIR, split, prefix=data.PATH_PREFIX, separator=data.PATH_LABEL_SEPARATOR)
    check_labels(videos, cfg.MODEL.NUM_CLASSES, f"{data.PATH_TO_DATA_DIR} ({split})")
    if data.RANDOM_FLIP and mode in ("pretrain", "finetune"):
        logger.info("ssv2: DATA.RANDOM_FLIP ignored, SSV2 labels distinguish left from right")
    return build_video_dataset(cfg, mode, videos, flip=False)
