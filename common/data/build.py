"""``build_dataset``: the one place where a config becomes a dataset."""
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

from common.modality import discover_modalities

from .registry import get_dataset_builder

MODES = ("pretrain", "finetune", "val", "test")


def build_dataset(cfg: CfgNode, mode: str) -> Dataset:
    """Builds the ``cfg.DATA.DATASET`` dataset for ``mode`` (one of ``MODES``).

    The returned dataset has a ``collate_fn`` attribute to pass to the DataLoader.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    discover_modalities()  # the modalities register their datasets
    return get_dataset_builder(cfg.DATA.DATASET.lower())(cfg, mode)
