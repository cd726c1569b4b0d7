"""A tiny generated ImageFolder dataset (train/ and val/ with one folder per class): noisy
stripes whose orientation is the class; ``classids.json`` names the classes (PySlowFast form)."""
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from common.data.class_names import class_ids_for, write_class_ids

SPLITS = ("train", "val")
CLASS_IDS_FILE = "classids.json"


def render_stripes(*, label: int, num_classes: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) uint8 stripes at ``180 * label / num_classes`` degrees, random phase,
    period and colours, plus noise."""
    angle = math.pi * label / num_classes
    rows, cols = np.mgrid[0:height, 0:width]
    period = rng.uniform(6, 12)
    wave = np.sin(2 * math.pi * (cols * math.cos(angle) + rows * math.sin(angle)) / period + rng.uniform(0, 2 * math.pi))
    low, high = rng.integers(0, 100, 3), rng.integers(155, 256, 3)
    image = low + (high - low) * (wave[..., None] + 1) / 2 + rng.normal(0, 12, (height, width, 3))
    return image.clip(0, 255).astype(np.uint8)


def make_synthetic_image_folder(
    root: str,
    *,
    num_classes: int = 4,
    images_per_class: Sequence[int] = (8, 2),
    height: int = 64,
    width: int = 80,
    seed: int = 0,
) -> Path:
    """Writes ``root/{train,val}/class_<k>/<n>.jpg`` (``images_per_class`` = train, val counts)
    and ``root/classids.json`` (ids in ImageFolder's sorted folder order); returns ``Path(root)``.
    Same seed, same files."""
    number = 0
    for split, per_class in zip(SPLITS, images_per_class):
        for label in range(num_classes):
            folder = Path(root, split, f"class_{label}")
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                rng = np.random.default_rng([seed, number])
                pixels = render_stripes(label=label, num_classes=num_classes, height=height, width=width, rng=rng)
                Image.fromarray(pixels).save(folder / f"{number:05d}.jpg", quality=90)
                number += 1
    write_class_ids(str(Path(root, CLASS_IDS_FILE)), class_ids_for(f"class_{k}" for k in range(num_classes)))
    return Path(root)
