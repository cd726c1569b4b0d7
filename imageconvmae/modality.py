"""The image modality, registered with ``common.modality`` (entry point ``image`` in setup.py).

Loading this module registers the image models and the "imagenet" dataset.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence

import torch
from fvcore.common.config import CfgNode
from torchvision.datasets.folder import IMG_EXTENSIONS

from common.modality import Modality, synthetic_classes
from imageconvmae import data as _data  # noqa: F401  (registers the dataset)
from imageconvmae.data.dataset import ImageFilesDataset, load_rgb
from imageconvmae.data.synthetic import make_synthetic_image_folder
from imageconvmae.data.transforms import build_eval_image_transform
from imageconvmae.models import MODALITY, image_geometry

# The synthetic image recipe: class = stripe orientation, train/val images per class.
SYNTHETIC_RECIPE = dict(images_per_class=(24, 4), height=112, width=128, seed=0)


def image_model_kwargs(cfg: CfgNode) -> Dict[str, Any]:
    """Image models need nothing beyond the common overrides."""
    return {}


def load_image(path: Path, cfg: CfgNode, crop_size: int) -> torch.Tensor:
    """The image at ``path`` as the model sees it: (1, C, S, S), resized, centre-cropped to
    ``crop_size``, normalised."""
    data = cfg.DATA
    transform = build_eval_image_transform(crop_size=crop_size, crop_pct=data.IMAGE_TEST_CROP_PCT,
                                           mean=data.MEAN, std=data.STD)
    return transform(load_rgb(str(path)))[None]


def image_files_dataset(cfg: CfgNode, paths: Sequence[str]) -> ImageFilesDataset:
    """The test job's evaluation transform (one centre view) over the image files ``paths``."""
    data = cfg.DATA
    transform = build_eval_image_transform(crop_size=data.TEST_CROP_SIZE, crop_pct=data.IMAGE_TEST_CROP_PCT,
                                           mean=data.MEAN, std=data.STD)
    return ImageFilesDataset(paths=paths, transform=transform, crop_size=data.TEST_CROP_SIZE)


def make_synthetic_images(folder: Path, cfg: CfgNode) -> None:
    """The stripes ImageFolder dataset (train/, val/) in ``folder``."""
    make_synthetic_image_folder(str(folder), num_classes=synthetic_classes(cfg), **SYNTHETIC_RECIPE)


IMAGE = Modality(
    name=MODALITY,
    input_key="image",
    input_ndim=4,
    channel_dim=-3,
    geometry=image_geometry,
    model_kwargs=image_model_kwargs,
    load_input=load_image,
    file_suffixes=tuple(IMG_EXTENSIONS),
    make_synthetic_data=make_synthetic_images,
    datasets=("imagenet",),
    file_dataset=image_files_dataset,
)
