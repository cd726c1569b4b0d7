"""Data, augmentation, mixup and data-loader config keys with their defaults.

Names follow PySlowFast where it has one (``DATA.PATH_TO_DATA_DIR``, ``DATA.NUM_FRAMES``,
``DATA.SAMPLING_RATE``, ``TEST.NUM_ENSEMBLE_VIEWS``, ...). Defaults are the video recipe
(Kinetics-400, 16 frames, stride 4); configs override them for SSV2 and ImageNet.
"""
from fvcore.common.config import CfgNode

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _node(cfg: CfgNode, name: str) -> CfgNode:
    """Returns ``cfg.<name>``, creating an empty node when it does not exist yet."""
    if name not in cfg:
        cfg[name] = CfgNode()
    return cfg[name]


def _add_dataset_keys(data: CfgNode) -> None:
    data.DATASET = "kinetics"  # "kinetics" | "ssv2" | "imagenet"
    # Folder with train.csv/val.csv/test.csv, or the SSV2 json files, or ImageNet's train/ val/.
    data.PATH_TO_DATA_DIR = ""
    # Prepended to every path in a list file; empty: paths are relative to the list's folder.
    data.PATH_PREFIX = ""
    # Between path and label in list files; empty: a comma if the line has one, else whitespace.
    data.PATH_LABEL_SEPARATOR = ""
    # {"class name": id} json (PySlowFast's classids.json, or SSV2's labels json) for predictions;
    # empty: PATH_TO_DATA_DIR/classids.json when it exists.
    data.CLASS_NAMES_FILE = ""


def _add_video_keys(data: CfgNode) -> None:
    data.NUM_FRAMES = 16
    data.SAMPLING_RATE = 4
    data.SAMPLING_MODE = "stride"  # "stride" (K400 style) | "segment" (TSN style, SSV2)
    data.DECODING_BACKEND = "decord"  # "decord" | "pyav"
    data.DECODE_FALLBACK = True  # retry a file with PyAV when decord fails on it
    data.DECODE_THREADS = 1  # decoder threads per data-loader worker
    data.DECODE_TIMEOUT = 30.0  # seconds per file; 0 disables the bound
    # Repeated sampling (MAE-ST): each loaded item gives this many augmented clips (image views) from
    # one decode, in one worker. Not TRAIN.REPEATED_AUG (DeiT), which repeats indices across ranks.
    data.REPEATED_SAMPLING = 1
    data.MAX_BAD_FILE_RETRIES = 10  # substitutes tried before a training item gives up


def _add_transform_keys(data: CfgNode) -> None:
    data.TRAIN_CROP_SIZE = 224
    data.TEST_CROP_SIZE = 224
    data.PRETRAIN_CROP = "multiscale"  # "multiscale" (VideoMAE) | "random_resized"
    data.MULTISCALE_CROP_SCALES = [1.0, 0.875, 0.75, 0.66]
    data.MULTISCALE_MAX_DISTORT = 1
    # Area / aspect ranges of the random resized crop (pretraining and finetuning).
    data.PRETRAIN_JITTER_SCALES_RELATIVE = [0.2, 1.0]
    data.TRAIN_JITTER_SCALES_RELATIVE = [0.08, 1.0]
    data.TRAIN_JITTER_ASPECT_RELATIVE = [0.75, 1.3333]
    data.RANDOM_FLIP = True  # set False for SSV2 (left/right matters)
    data.MEAN = list(IMAGENET_MEAN)
    data.STD = list(IMAGENET_STD)
    # Images are evaluated at short side TEST_CROP_SIZE / IMAGE_TEST_CROP_PCT, centre crop;
    # videos at short side TEST_CROP_SIZE (the multi-view protocol).
    data.IMAGE_TEST_CROP_PCT = 0.875


def _add_aug_keys(aug: CfgNode) -> None:
    aug.ENABLE = True  # finetuning RandAugment + random erasing
    aug.RAND_AUGMENT_MAGNITUDE = 7
    aug.RAND_AUGMENT_NUM_OPS = 4
    aug.RAND_AUGMENT_MSTD = 0.5
    aug.RE_PROB = 0.25
    aug.INTERPOLATION = "bicubic"  # image finetuning transform (timm)
    aug.LABEL_SMOOTHING = 0.1  # for the loss when mixup is off


def _add_mixup_keys(mixup: CfgNode) -> None:
    mixup.ENABLE = True
    mixup.ALPHA = 0.8
    mixup.CUTMIX_ALPHA = 1.0
    mixup.PROB = 1.0
    mixup.SWITCH_PROB = 0.5
    mixup.LABEL_SMOOTH_VALUE = 0.1


def add_data_config(cfg: CfgNode) -> None:
    """Adds the ``DATA``, ``TEST`` view, ``AUG``, ``MIXUP`` and ``DATA_LOADER`` keys to ``cfg``."""
    data = _node(cfg, "DATA")
    _add_dataset_keys(data)
    _add_video_keys(data)
    _add_transform_keys(data)
    test = _node(cfg, "TEST")
    test.NUM_ENSEMBLE_VIEWS = 5  # temporal views per video (SSV2: 2)
    test.NUM_SPATIAL_CROPS = 3
    _add_aug_keys(_node(cfg, "AUG"))
    _add_mixup_keys(_node(cfg, "MIXUP"))
    loader = _node(cfg, "DATA_LOADER")
    loader.NUM_WORKERS = 8
    loader.PIN_MEMORY = True
