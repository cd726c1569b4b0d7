"""Collate functions for clip/image items and multi-view items, and ``batch_inputs``.

Hot paths (pretraining clips, multi-view test views) travel from the loader workers as uint8:
a quarter of the bytes to stack and to pass through shared memory. The collated batch then
carries its normalisation (``NORMALIZATION_KEY``: mean and std per channel) and
``batch_inputs`` turns the inputs into normalised floats, on the device when one is given.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch.utils.data import default_collate

from common.modality import input_of

NORMALIZATION_KEY = "normalization"  # (2, C): per-channel mean, std of uint8 inputs in [0, 1] units
Normalization = Optional[Tuple[Sequence[float], Sequence[float]]]


def _with_normalization(batch: Dict[str, Any], normalization: Normalization) -> Dict[str, Any]:
    if normalization is not None:
        batch[NORMALIZATION_KEY] = torch.tensor(normalization, dtype=torch.float32)
    return batch


def collate_clips(items: Sequence[Sequence[Dict[str, Any]]], normalization: Normalization = None) -> Dict[str, Any]:
    """Collates items that are each a list of R sample dicts into one batch of B*R samples.

    Tensors are stacked (``video`` -> (B*R, C, T, H, W), ``image`` -> (B*R, C, H, W)),
    ints become (B*R,) tensors, strings lists. ``normalization`` (mean, std) is attached for
    uint8 inputs.
    """
    return _with_normalization(default_collate([sample for item in items for sample in item]), normalization)


def collate_views(items: Sequence[Dict[str, Any]], normalization: Normalization = None) -> Dict[str, Any]:
    """Collates multi-view items: ``video`` -> (B, V, C, T, H, W), ``temporal_index`` and
    ``spatial_index`` -> (B, V), ``label``/``index`` -> (B,), ``path``/``error`` lists."""
    return _with_normalization(default_collate(list(items)), normalization)


def normalization_affine(mean, std, shape: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale``, ``shift`` (float32, viewed as ``shape``) such that
    ``(x / 255 - mean) / std == x * scale - shift`` for uint8 pixel values ``x``."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    std = torch.as_tensor(std, dtype=torch.float64)
    return (1.0 / (255.0 * std)).float().view(shape), (mean / std).float().view(shape)


def normalize_uint8(x: torch.Tensor, normalization: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """uint8 ``x`` -> float32 ``(x / 255 - mean) / std`` per channel (``normalization`` (2, C))."""
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    scale, shift = normalization_affine(*normalization.cpu(), shape)
    return x.float().mul_(scale.to(x.device)).sub_(shift.to(x.device))


def batch_inputs(batch: Dict[str, Any], device: Optional[torch.device] = None) -> torch.Tensor:
    """The model input of a collated batch, whatever its modality (``common.modality``): moved to
    ``device`` (if given) and, if it travelled as uint8, normalised there."""
    key, modality = input_of(batch)
    x = batch[key]
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        if NORMALIZATION_KEY not in batch:
            raise KeyError(f"uint8 {key!r} batch without {NORMALIZATION_KEY!r} (mean, std)")
        x = normalize_uint8(x, batch[NORMALIZATION_KEY], modality.channel_dim)
    return x
