"""Stand-in datasets for fast engine tests: random tensors with the data pipeline's item layout."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import torch
from torch.utils.data import Dataset, default_collate

from common.config import load_config
from common.data import register_dataset, registered_datasets
from common.modality import modality_of_config

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"

TOY_NAME = "engine_toy"
TINY_MODEL = ["MODEL.EMBED_DIM", "[16, 24, 32]", "MODEL.DEPTH", "[1, 1, 2]", "MODEL.MLP_RATIO", "[2.0, 2.0, 2.0]",
              "MODEL.NUM_HEADS", "2", "MODEL.DECODER_EMBED_DIM", "16", "MODEL.DECODER_NUM_HEADS", "2"]


class ToyDataset(Dataset):
    """``size`` items; training items ``{video|image, label, decode_failures}``, test items with
    ``views`` views plus ``index``, ``path``, ``error`` (index 1 is 'unreadable')."""

    def __init__(self, *, size: int, shape, num_classes: int, views: int = 0, key: str = "video"):
        self.size, self.shape, self.num_classes, self.views, self.key = size, tuple(shape), num_classes, views, key
        self.collate_fn = default_collate

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Dict[str, Any]:
        label = index % self.num_classes
        # The class shows as a brighter (or darker) channel, so a classifier can learn it.
        base = torch.rand(self.shape) * 0.5
        base[label % 3] += 1.0 if label < 3 else -1.0
        if not self.views:
            return {self.key: base, "label": label, "index": index, "decode_failures": 0}
        return {self.key: base.expand(self.views, *self.shape).clone(), "label": label, "index": index,
                "path": f"video_{index}.mp4", "error": "unreadable" if index == 1 else ""}


def register_toy_dataset() -> None:
    """Register ``DATA.DATASET engine_toy``: sizes from DATA.NUM_FRAMES / TRAIN_CROP_SIZE; 'test' multi-view."""
    if TOY_NAME in registered_datasets():
        return

    @register_dataset(TOY_NAME)
    def build(cfg, mode: str) -> ToyDataset:
        size = cfg.DATA.TEST_CROP_SIZE if mode in ("val", "test") else cfg.DATA.TRAIN_CROP_SIZE
        modality = modality_of_config(cfg)
        video = modality.input_ndim == 5
        shape = (3, cfg.DATA.NUM_FRAMES, size, size) if video else (3, size, size)
        views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS if mode == "test" else 0
        count = {"test": 7, "val": 6}.get(mode, 16)
        return ToyDataset(size=count, shape=shape, num_classes=cfg.MODEL.NUM_CLASSES, views=views,
                          key=modality.input_key)


def toy_overrides(output_dir: Path, *extra: str) -> List[str]:
    """Overrides that run a demo recipe with a tiny model on the in-memory toy dataset (4x32x32
    clips / 32x32 images, 4 classes), 2 epochs, loading in the main process."""
    return ["DATA.DATASET", TOY_NAME, "OUTPUT_DIR", str(output_dir), "SOLVER.MAX_EPOCH", "2", *TINY_MODEL,
            "MODEL.NUM_CLASSES", "4",  # the toy data names no classes
            "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
            "DATA_LOADER.NUM_WORKERS", "0", "LOG.TENSORBOARD", "False", *extra]


def toy_cfg(recipe: str, output_dir: Path, *extra: str):
    """``configs/demo/<recipe>.yaml`` on the toy dataset (``extra``: more KEY VALUE overrides)."""
    return load_config(str(DEMO / f"{recipe}.yaml"), toy_overrides(output_dir, *extra))


def real_overrides(output_dir: Path, data_dir: Path, *extra: str) -> List[str]:
    """Overrides that run a demo recipe with a tiny model on generated media (``data_dir``), 3 classes."""
    return ["DATA.PATH_TO_DATA_DIR", str(data_dir), "OUTPUT_DIR", str(output_dir), "MODEL.NUM_CLASSES", "3",
            "SOLVER.MAX_EPOCH", "1", *TINY_MODEL, "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32",
            "DATA.TEST_CROP_SIZE", "32", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2",
            "DATA_LOADER.NUM_WORKERS", "0", "LOG.TENSORBOARD", "False", *extra]


def real_cfg(recipe: str, output_dir: Path, data_dir: Path, *extra: str):
    """``configs/demo/<recipe>.yaml`` on generated media."""
    return load_config(str(DEMO / f"{recipe}.yaml"), real_overrides(output_dir, data_dir, *extra))


def preempt_after_steps(monkeypatch, count: int) -> None:
    """Make the training loop see a preemption request once ``count`` optimizer steps are done (it
    then checkpoints and exits, as on SIGTERM)."""
    from common.engine import trainer

    steps = []
    real_step = trainer._optimizer_step

    def counting_step(*args, **kwargs):
        steps.append(1)
        return real_step(*args, **kwargs)
    monkeypatch.setattr(trainer, "_optimizer_step", counting_step)
    monkeypatch.setattr(trainer, "_preempt_requested", lambda preemption: len(steps) == count)
