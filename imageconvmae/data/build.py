"""Config -> image datasets: registers "imagenet" in the common dataset registry.
This is the only module of the image data package that reads the config."""
import os

from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from common.data.registry import register_dataset
from common.errors import DataNotFoundError

from .dataset import ImageFolderDataset
from .transforms import ImageTransform, build_eval_image_transform, build_finetune_image_transform, build_pretrain_image_transform

# ImageNet has no public test labels: test is the val split with the evaluation transform.
SPLIT_OF_MODE = {"pretrain": "train", "finetune": "train", "val": "val", "test": "val"}


def build_image_transform(cfg: CfgNode, mode: str) -> ImageTransform:
    """The image transform of ``mode``."""
    data, aug = cfg.DATA, cfg.AUG
    if mode == "pretrain":
        return build_pretrain_image_transform(
            crop_size=data.TRAIN_CROP_SIZE, area_range=data.PRETRAIN_JITTER_SCALES_RELATIVE, flip=data.RANDOM_FLIP, mean=data.MEAN, std=data.STD
        )
    if mode == "finetune":
        return build_finetune_image_transform(
            crop_size=data.TRAIN_CROP_SIZE,
            area_range=data.TRAIN_JITTER_SCALES_RELATIVE,
            flip=data.RANDOM_FLIP,
            rand_augment=(aug.RAND_AUGMENT_MAGNITUDE, aug.RAND_AUGMENT_NUM_OPS, aug.RAND_AUGMENT_MSTD) if aug.ENABLE else None,
            erase_prob=aug.RE_PROB if aug.ENABLE else 0.0,
            interpolation=aug.INTERPOLATION,
            mean=data.MEAN,
            std=data.STD,
        )
    return build_eval_image_transform(crop_size=data.TEST_CROP_SIZE, crop_pct=data.IMAGE_TEST_CROP_PCT, mean=data.MEAN, std=data.STD)


@register_dataset("imagenet")
def build_imagenet(cfg: CfgNode, mode: str) -> Dataset:
    """ImageNet (or any ImageFolder tree) under ``DATA.PATH_TO_DATA_DIR/{train,val}``."""
    root = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, SPLIT_OF_MODE[mode])
    if not os.path.isdir(root):
        raise DataNotFoundError(f"no {SPLIT_OF_MODE[mode]} split in DATA.PATH_TO_DATA_DIR: the folder {root} "
                                "does not exist (expected one sub-folder of images per class)")
    training = mode in ("pretrain", "finetune")
    return ImageFolderDataset(
        root=root,
        transform=build_image_transform(cfg, mode),
        num_views=cfg.DATA.REPEATED_SAMPLING if training else 1,
        max_retries=cfg.DATA.MAX_BAD_FILE_RETRIES,
    )
