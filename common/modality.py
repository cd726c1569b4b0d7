"""The modality interface: what ``common`` needs to know about images, videos or any other input.

A modality package (``imageconvmae``, ``videoconvmae``, or a third one) describes itself once
with a ``Modality`` and registers it: through the ``convmae.modalities`` entry point group of its
distribution (``setup.py``), or by calling ``register_modality`` itself. ``common`` then asks this
module, never a model-name prefix or a package name: which modality a model belongs to (the
model registry records it), what a sample of it looks like, how to read one file of it, how to
write its synthetic demo data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "convmae.modalities"
INDEX_KEY = "index"  # every sample's position in its dataset, whatever the modality
LABEL_KEY = "label"
SYNTHETIC_CLASSES = 4  # classes of the synthetic demo data when MODEL.NUM_CLASSES leaves the count to the data


@dataclass(frozen=True)
class Modality:
    """One kind of input.

    name: the modality's name, also the tag its models are registered with
        (``register_model(modality=name)``).
    input_key: the sample key of the model input (``"video"``, ``"image"``).
    input_ndim: dims of a batch of single views, e.g. 5 for (N, C, T, H, W).
    channel_dim: the channel dim of an input, counted from the end (-4 for (..., C, T, H, W)).
    geometry: official model arguments (``img_size``, ...) -> ``{"input_size", "stage_strides", ...}``;
        called with no arguments it gives the family's default geometry.
    model_kwargs: config -> the modality's extra ``create_model`` overrides (e.g. ``num_frames``).
    load_input: (path, config) -> one file as the model sees it, (1, C, ...) normalised floats,
        the centre view at ``DATA.TEST_CROP_SIZE``.
    file_suffixes: lower-case suffixes of the files ``load_input`` reads.
    make_synthetic_data: (folder, config) -> writes the demo dataset ``DATA.DATASET`` of the
        config into ``folder`` (``synthetic_classes(config)`` classes), ready for every job.
    datasets: the ``DATA.DATASET`` names the modality registers.
    file_dataset: (config, paths) -> a test-mode dataset over those files (predictions and
        features, ``common.engine.inference``): items as the test job's (the input with all
        test views, ``index``, ``path``, ``label`` -1), a file that cannot be read gives zeros and
        ``error`` set ("" otherwise). None: the modality offers no inference on files.
    sliding_windows: (path, config, window_frames, window_stride, batch_size) -> the sliding
        windows of one long file (``num_windows``, ``start_seconds``, ``batches()`` of model
        inputs), for window-mode features; None where the modality has no time axis.
    """

    name: str
    input_key: str
    input_ndim: int
    channel_dim: int
    geometry: Callable[..., Dict[str, Any]]
    model_kwargs: Callable[[CfgNode], Dict[str, Any]]
    load_input: Callable[[Path, CfgNode], torch.Tensor]
    file_suffixes: Tuple[str, ...]
    make_synthetic_data: Callable[[Path, CfgNode], None]
    datasets: Tuple[str, ...] = field(default=())
    file_dataset: Optional[Callable[[CfgNode, Sequence[str]], Any]] = None
    sliding_windows: Optional[Callable[..., Any]] = None

    def stride(self) -> Tuple[int, ...]:
        """Total stride of the default geometry per input dim, e.g. (T, H, W) = (2, 16, 16)."""
        strides = self.geometry()["stage_strides"]
        total = [1] * len(strides[0])
        for stage in strides:
            total = [t * s for t, s in zip(total, stage)]
        return tuple(total)

    def reads(self, path: Path) -> bool:
        """True for a file whose suffix this modality reads."""
        return Path(path).suffix.lower() in self.file_suffixes


def synthetic_classes(cfg: CfgNode) -> int:
    """The class count of the synthetic data for ``cfg``: ``MODEL.NUM_CLASSES``, or ``SYNTHETIC_CLASSES``
    when it is 0 (the count from the data: the data made here then names 4 classes)."""
    return cfg.MODEL.NUM_CLASSES or SYNTHETIC_CLASSES


_MODALITIES: Dict[str, Modality] = {}
_discovered = False


def register_modality(modality: Modality) -> Modality:
    """Register ``modality`` under its name; registering the same object again is a no-op."""
    known = _MODALITIES.get(modality.name)
    if known is not None and known is not modality:
        raise ValueError(f"a modality named {modality.name!r} is already registered")
    _MODALITIES[modality.name] = modality
    return modality


def discover_modalities() -> None:
    """Load every installed modality (entry point group ``convmae.modalities``) once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        register_modality(entry.load())


def registered_modalities() -> List[str]:
    """The registered modality names, sorted."""
    discover_modalities()
    return sorted(_MODALITIES)


def get_modality(name: str) -> Modality:
    """The modality registered as ``name``; a KeyError lists the known ones."""
    discover_modalities()
    if name not in _MODALITIES:
        raise KeyError(f"unknown modality {name!r}; registered: {sorted(_MODALITIES)}")
    return _MODALITIES[name]


def modality_of_model(model_name: str) -> Modality:
    """The modality a registered model belongs to (as its factory was registered)."""
    from common.models.registry import model_modality  # the registry imports models: load it late

    return get_modality(model_modality(model_name))


def modality_of_config(cfg: CfgNode) -> Modality:
    """The modality of ``cfg.MODEL.NAME``."""
    return modality_of_model(cfg.MODEL.NAME)


def modality_of_dataset(dataset: str) -> Modality:
    """The modality that registers ``DATA.DATASET`` ``dataset``."""
    for name in registered_modalities():
        if dataset.lower() in _MODALITIES[name].datasets:
            return _MODALITIES[name]
    known = sorted(d for m in _MODALITIES.values() for d in m.datasets)
    raise KeyError(f"no modality reads DATA.DATASET {dataset!r}; known datasets: {known}")


def input_of(batch: Dict[str, Any]) -> Tuple[str, Modality]:
    """The input key of a collated batch and its modality."""
    for name in registered_modalities():
        modality = _MODALITIES[name]
        if modality.input_key in batch:
            return modality.input_key, modality
    keys = [m.input_key for m in _MODALITIES.values()]
    raise KeyError(f"batch has none of the input keys {keys}; keys: {sorted(batch)}")

