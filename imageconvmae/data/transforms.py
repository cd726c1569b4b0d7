"""Image transforms: MAE pretraining, timm finetuning, centre-crop evaluation.
PIL image -> float (C, H, W), normalised."""
from typing import Callable, Optional, Sequence, Tuple

import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

ImageTransform = Callable[[Image.Image], torch.Tensor]


def build_pretrain_image_transform(
    *, crop_size: int, area_range: Sequence[float] = (0.2, 1.0), flip: bool = True, mean: Sequence[float], std: Sequence[float]
) -> ImageTransform:
    """MAE pretraining: RandomResizedCrop (bicubic, area ``area_range``), flip, normalise."""
    steps = [T.RandomResizedCrop(crop_size, scale=tuple(area_range), interpolation=T.InterpolationMode.BICUBIC)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])


def build_finetune_image_transform(
    *,
    crop_size: int,
    area_range: Sequence[float] = (0.08, 1.0),
    flip: bool = True,
    rand_augment: Optional[Tuple[int, int, float]] = (9, 2, 0.5),
    erase_prob: float = 0.25,
    interpolation: str = "bicubic",
    mean: Sequence[float],
    std: Sequence[float],
) -> ImageTransform:
    """timm's training transform: random resized crop, flip, RandAugment
    ``rand-m{m}-n{n}-mstd{mstd}-inc1`` (``rand_augment`` = (m, n, mstd), None: off), normalise,
    random erasing (pixel mode, one box)."""
    auto_augment = None
    if rand_augment is not None:
        magnitude, num_ops, mstd = rand_augment
        auto_augment = f"rand-m{magnitude}-n{num_ops}-mstd{mstd}-inc1"
    return create_transform(
        crop_size,
        is_training=True,
        scale=tuple(area_range),
        hflip=0.5 if flip else 0.0,
        color_jitter=None,
        auto_augment=auto_augment,
        interpolation=interpolation,
        re_prob=erase_prob,
        re_mode="pixel",
        re_count=1,
        mean=tuple(mean),
        std=tuple(std),
    )


def build_eval_image_transform(*, crop_size: int, crop_pct: float = 0.875, mean: Sequence[float], std: Sequence[float]) -> ImageTransform:
    """Evaluation: short side to ``crop_size / crop_pct`` (bicubic), centre crop, normalise."""
    return T.Compose(
        [
            T.Resize(int(crop_size / crop_pct), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(crop_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
