"""Config -> image datasets: registers "imagenet" in the common dataset registry.
This is the only module of the image data package that reads the config."""
import os
from typing import List, Tuple

from fvcore.common.config import CfgNode
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from common.data.class_count import check_labels, folder_classes
from common.data.lists import ListEntry
from common.data.registry import register_dataset
from common.data.sources import class_folder_files, missing_split, pretraining_files, split_class_names, with_summary

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


IMAGE_SUFFIXES = tuple(IMG_EXTENSIONS)
MAKE_SPLIT = "move a share of the images of each train/<class>/ folder into val/<class>/ (same class folder names)"


def image_files(cfg: CfgNode, mode: str) -> Tuple[List[ListEntry], str]:
    """The images of ``mode`` and a one-line summary: any source for pretraining (a plain folder, a
    list, ``train/``), the class folders of the split otherwise (numbered by ``split_class_names``)."""
    data = cfg.DATA
    if mode == "pretrain":
        return pretraining_files(data.PATH_TO_DATA_DIR, suffixes=IMAGE_SUFFIXES, kind="image", prefix=data.PATH_PREFIX,
                                 separator=data.PATH_LABEL_SEPARATOR)
    split = SPLIT_OF_MODE[mode]
    root = os.path.join(data.PATH_TO_DATA_DIR, split)
    if not os.path.isdir(root):
        raise missing_split(data.PATH_TO_DATA_DIR, split, MAKE_SPLIT, lists=False)
    classes, classes_from = split_class_names(data.PATH_TO_DATA_DIR, split, names_file=data.CLASS_NAMES_FILE)
    return class_folder_files(root, suffixes=IMAGE_SUFFIXES, kind="image", classes=classes, classes_from=classes_from)


@register_dataset("imagenet", classes=folder_classes)
def build_imagenet(cfg: CfgNode, mode: str) -> Dataset:
    """ImageNet (or any ImageFolder tree) under ``DATA.PATH_TO_DATA_DIR/{train,val}``; for
    pretraining also a plain folder of images or a list of image paths."""
    entries, summary = image_files(cfg, mode)
    if mode != "pretrain":
        check_labels(((e.label, e.where) for e in entries), cfg)
    training = mode in ("pretrain", "finetune")
    dataset = ImageFolderDataset(
        samples=[(e.path, e.label) for e in entries],
        transform=build_image_transform(cfg, mode),
        num_views=cfg.DATA.REPEATED_SAMPLING if training else 1,
        max_retries=cfg.DATA.MAX_BAD_FILE_RETRIES,
    )
    return with_summary(dataset, summary)
