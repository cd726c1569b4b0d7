"""Image data: ImageFolder datasets, MAE / timm transforms, a synthetic image folder.

Importing this package registers the "imagenet" dataset with ``common.data``.
"""
from . import build  # noqa: F401  (registers the dataset)
from .dataset import ImageFolderDataset, load_rgb
from .synthetic import make_synthetic_image_folder
from .transforms import build_eval_image_transform, build_finetune_image_transform, build_pretrain_image_transform

__all__ = [
    "ImageFolderDataset",
    "build_eval_image_transform",
    "build_finetune_image_transform",
    "build_pretrain_image_transform",
    "load_rgb",
    "make_synthetic_image_folder",
]
