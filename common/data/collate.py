"""Collate functions for clip/image items and multi-view items, and ``batch_inputs``."""
from typing import Any, Dict, Sequence

import torch
from torch.utils.data import default_collate

INPUT_KEYS = ("video", "image")


def collate_clips(items: Sequence[Sequence[Dict[str, Any]]]) -> Dict[str, Any]:
    """Collates items that are each a list of R sample dicts into one batch of B*R samples.

    Tensors are stacked (``video`` -> (B*R, C, T, H, W), ``image`` -> (B*R, C, H, W)),
    ints become (B*R,) tensors, strings lists.
    """
    return default_collate([sample for item in items for sample in item])


def collate_views(items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Collates multi-view items: ``video`` -> (B, V, C, T, H, W), ``temporal_index`` and
    ``spatial_index`` -> (B, V), ``label``/``video_index`` -> (B,), ``path``/``error`` lists."""
    return default_collate(list(items))


def batch_inputs(batch: Dict[str, Any]) -> torch.Tensor:
    """The model input of a collated batch, whatever the modality (``video`` or ``image``)."""
    for key in INPUT_KEYS:
        if key in batch:
            return batch[key]
    raise KeyError(f"batch has none of the input keys {INPUT_KEYS}; keys: {sorted(batch)}")
