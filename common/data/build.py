"""``build_dataset``: the one place where a config becomes a dataset."""
import importlib

from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from .registry import get_dataset_builder

MODES = ("pretrain", "finetune", "val", "test")

# Imported lazily so that ``common`` does not depend on the modality packages at import time.
MODALITY_PACKAGES = ("videoconvmae.data", "imageconvmae.data")


def build_dataset(cfg: CfgNode, mode: str) -> Dataset:
    """Builds the ``cfg.DATA.DATASET`` dataset for ``mode`` (one of ``MODES``).

    The returned dataset has a ``collate_fn`` attribute to pass to the DataLoader.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    for package in MODALITY_PACKAGES:
        importlib.import_module(package)
    return get_dataset_builder(cfg.DATA.DATASET.lower())(cfg, mode)
