"""The dataset registry: ``DATA.DATASET`` name -> builder ``(cfg, mode) -> Dataset``.

Each modality's data package registers its datasets on import (see ``common.modality``).
"""
from typing import Callable, Dict, List

from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

DatasetBuilder = Callable[[CfgNode, str], Dataset]

_BUILDERS: Dict[str, DatasetBuilder] = {}


def register_dataset(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator registering a builder under ``name``; a name can be registered once."""

    def register(builder: DatasetBuilder) -> DatasetBuilder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return register


def registered_datasets() -> List[str]:
    """The registered dataset names, sorted."""
    return sorted(_BUILDERS)


def get_dataset_builder(name: str) -> DatasetBuilder:
    """The builder registered under ``name``; a KeyError lists the known names."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown DATA.DATASET {name!r}; registered: {registered_datasets()}")
    return _BUILDERS[name]
