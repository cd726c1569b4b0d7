"""Config -> video datasets: registers "kinetics" and "ssv2" in the common dataset registry.

This is the only module of the video data package that reads the config.
"""
import logging
import os
from typing import Callable, List, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from common.data.class_count import DataClasses, check_labels, folder_classes
from common.data.class_names import read_class_ids
from common.data.registry import register_dataset
from common.data.sources import missing_split, pretraining_files, split_class_names, with_summary
from common.errors import DataNotFoundError

from .annotations import VIDEO_EXTENSIONS, LabeledVideo, read_class_folders, read_path_label_list, read_ssv2_json
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
MAKE_SPLITS = ("make train/val/test splits from a folder of videos with `python tools/prepare_videos.py SOURCE DST "
               "--val-share 0.1 --test-share 0.1` (class folders give the labels) and set DATA.PATH_TO_DATA_DIR DST")
Videos = Tuple[List[LabeledVideo], str]  # the videos and a one-line summary of where they were found


def list_or_folder_videos(data_dir: str, split: str, *, prefix: str, separator: str, names_file: str = "") -> Videos:
    """``data_dir/<split>.csv`` ("path label" lines) if it exists, else the class folders of
    ``data_dir/<split>/``, numbered by ``split_class_names`` (``names_file``: ``DATA.CLASS_NAMES_FILE``)."""
    list_file = os.path.join(data_dir, f"{split}.csv")
    if os.path.isfile(list_file):
        videos = read_path_label_list(list_file, prefix=prefix, separator=separator)
        return videos, f"{len(videos)} videos listed in {list_file}"
    folder = os.path.join(data_dir, split)
    if os.path.isdir(folder):
        classes, classes_from = split_class_names(data_dir, split, names_file=names_file)
        return read_class_folders(folder, classes=classes, classes_from=classes_from)
    raise missing_split(data_dir, split, MAKE_SPLITS)


def pretraining_videos(data_path: str, *, prefix: str, separator: str) -> Videos:
    """The videos pretraining reads (labels optional): a list, the train split, or a plain folder."""
    entries, summary = pretraining_files(data_path, suffixes=VIDEO_EXTENSIONS, kind="video", prefix=prefix,
                                         separator=separator)
    return [LabeledVideo(e.path, e.label, e.where) for e in entries], summary


def kinetics_videos(cfg: CfgNode, mode: str) -> Videos:
    """The videos of ``mode``: any source for pretraining, labelled splits otherwise."""
    data = cfg.DATA
    if mode == "pretrain":
        return pretraining_videos(data.PATH_TO_DATA_DIR, prefix=data.PATH_PREFIX, separator=data.PATH_LABEL_SEPARATOR)
    return list_or_folder_videos(data.PATH_TO_DATA_DIR, SPLIT_OF_MODE[mode], prefix=data.PATH_PREFIX,
                                 separator=data.PATH_LABEL_SEPARATOR, names_file=data.CLASS_NAMES_FILE)


def ssv2_videos(cfg: CfgNode, mode: str) -> Videos:
    """SSV2 json annotations when ``DATA.PATH_TO_DATA_DIR`` holds the labels json (videos in
    ``DATA.PATH_PREFIX``, or in the data folder), else the kinetics forms."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    labels_file = os.path.join(data_dir, SSV2_LABELS_FILE)
    if not os.path.isfile(labels_file):
        return kinetics_videos(cfg, mode)
    split_file = ssv2_split_file(data_dir, SPLIT_OF_MODE[mode])
    videos = read_ssv2_json(labels_file, split_file, video_dir=cfg.DATA.PATH_PREFIX or data_dir)
    return videos, f"{len(videos)} videos listed in {split_file}"


def ssv2_split_file(data_dir: str, split: str) -> str:
    """The SSV2 json of ``split`` in ``data_dir`` under its official or short name;
    DataNotFoundError naming every name looked for."""
    candidates = [os.path.join(data_dir, name) for name in SSV2_SPLIT_FILES[split]]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise DataNotFoundError(f"no SSV2 {split} split in {data_dir}: looked for {', '.join(SSV2_SPLIT_FILES[split])}")


def kinetics_classes(cfg: CfgNode) -> Optional[DataClasses]:
    """The classes of the split folders when the labels come from them (no ``train.csv``)."""
    if os.path.isfile(os.path.join(cfg.DATA.PATH_TO_DATA_DIR, "train.csv")):
        return None
    return folder_classes(cfg)


def ssv2_classes(cfg: CfgNode) -> Optional[DataClasses]:
    """SSV2's labels json (one class per template), else as kinetics."""
    labels_file = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, SSV2_LABELS_FILE)
    if os.path.isfile(labels_file):
        return DataClasses(len(read_class_ids(labels_file)), labels_file)
    return kinetics_classes(cfg)


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


def build_from(cfg: CfgNode, mode: str, found: Videos, *, flip: bool) -> Dataset:
    """The dataset of ``mode`` over the ``found`` videos, labels checked against the class count."""
    videos, summary = found
    if mode != "pretrain":
        check_labels(((v.label, v.source or v.path) for v in videos), cfg)
    return with_summary(build_video_dataset(cfg, mode, videos, flip=flip), summary)


@register_dataset("kinetics", classes=kinetics_classes)
def build_kinetics(cfg: CfgNode, mode: str) -> Dataset:
    """Kinetics-400 or any "path label" list / folder-per-class video dataset; for pretraining also
    a plain folder of videos or a list without labels."""
    return build_from(cfg, mode, kinetics_videos(cfg, mode), flip=cfg.DATA.RANDOM_FLIP)


@register_dataset("ssv2", classes=ssv2_classes)
def build_ssv2(cfg: CfgNode, mode: str) -> Dataset:
    """Something-Something-v2; never flipped (its classes distinguish left from right)."""
    if cfg.DATA.RANDOM_FLIP and mode in ("pretrain", "finetune"):
        logger.info("ssv2: DATA.RANDOM_FLIP ignored, SSV2 labels distinguish left from right")
    return build_from(cfg, mode, ssv2_videos(cfg, mode), flip=False)
