"""The dataset registry: ``DATA.DATASET`` name -> builder ``(cfg, mode) -> Dataset``, and what names
the classes of that dataset (``(cfg) -> DataClasses or None``, see ``common.data.class_count``).

Each modality's data package registers its datasets on import (see ``common.modality``).
"""
from typing import Any, Callable, Dict, List, Optional

from fvcore.common.config import CfgNode
from torch.utils.data import Dataset

DatasetBuilder = Callable[[CfgNode, str], Dataset]
ClassSource = Callable[[CfgNode], Any]

_BUILDERS: Dict[str, DatasetBuilder] = {}
_CLASS_SOURCES: Dict[str, ClassSource] = {}


def register_dataset(name: str, *, classes: Optional[ClassSource] = None) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator registering a builder under ``name``; a name can be registered once. ``classes``:
    what names the dataset's classes where the data itself does (class folders, a labels file)."""

    def register(builder: DatasetBuilder) -> DatasetBuilder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} is already registered")
        _BUILDERS[name] = builder
        if classes is not None:
            _CLASS_SOURCES[name] = classes
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


def get_class_source(name: str) -> Optional[ClassSource]:
    """What names the classes of dataset ``name`` (None: nothing beyond a class-names file)."""
    return _CLASS_SOURCES.get(name)
