"""Checkpoint files: safe loading, atomic writing, pretraining -> classifier conversion."""
from __future__ import annotations

import argparse
import logging
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from common.errors import UserError, some_of
from common.files import atomic_write
from common.pos_embed import infer_source_grid, resize_pos_embed

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
# Keys of a pretraining model that a classifier does not have.
PRETRAIN_ONLY_PREFIXES = (
    "decoder_", "mask_token", "stage1_output_decode", "stage2_output_decode",
)

STATE_DICT_ENTRIES = ("model", "state_dict")  # where checkpoints keep the weights, in this order
DDP_PREFIX = "module."
# Prefixes that wrappers put on every key: DDP's, and torch.compile's OptimizedModule's.
WRAPPER_PREFIXES = (DDP_PREFIX, "_orig_mod.")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read safely or does not fit the model."""


def safe_load(path: PathLike) -> Dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; ``argparse.Namespace`` (official MAE/ConvMAE
    checkpoints keep their args in it) is allow-listed. Anything else is refused with an
    error naming the file, never unpickled in full."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was truncated, not a checkpoint")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        reason = str(err).strip() or type(err).__name__
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut-off one has no directory
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({size} bytes, not a complete "
                                  f"checkpoint archive): {reason}") from err
        raise CheckpointError(f"cannot load checkpoint {path} safely: {reason}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` through ``common.files.atomic_write``: temp file beside ``path``, fsync, rename.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    atomic_write(path, lambda f: torch.save(obj, f))


def non_finite_tensors(state: Mapping[str, Any]) -> List[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]


def model_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint dict, whatever the common layout: its ``model`` entry
    (MAE, ours), its ``state_dict`` entry (Lightning and many scripts), or the dict itself (a bare
    state dict); a ``module.`` or ``_orig_mod.`` prefix on every key (saved from a DDP or a
    ``torch.compile`` wrapper, in any nesting) is removed."""
    key = next((k for k in STATE_DICT_ENTRIES if k in checkpoint), None)
    state = checkpoint[key] if key else checkpoint
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint's {key!r} entry is not a state dict")
    state = dict(state)
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def check_finite(weights: Mapping[str, Any], path: PathLike) -> None:
    """``CheckpointError`` naming every tensor of ``weights`` (from the checkpoint ``path``) that
    holds a NaN or an infinity: such weights (a run that diverged) would train or predict NaN
    without an error."""
    bad = non_finite_tensors(weights)
    if bad:
        shown = some_of(bad)
        raise CheckpointError(f"checkpoint {path} has non-finite values (NaN or inf) in {len(bad)} "
                              f"tensor{'s' if len(bad) > 1 else ''}: {shown}; it comes from a run that diverged: "
                              "use an earlier checkpoint of it")


def classifier_state_from_pretraining(
    state: Mapping[str, torch.Tensor],
    model: nn.Module,
    source_grid: Optional[Sequence[int]] = None,
) -> Dict[str, torch.Tensor]:
    """Drop pretraining-only keys and resize ``pos_embed`` to ``model.grid``."""
    out = {k: v for k, v in state.items() if not k.startswith(PRETRAIN_ONLY_PREFIXES)}
    if "norm.weight" in out and not hasattr(model, "norm"):
        out.pop("norm.weight")
        out.pop("norm.bias", None)
    if "pos_embed" in out:
        pos = out["pos_embed"]
        grid = tuple(source_grid) if source_grid else infer_source_grid(pos.shape[1], model.grid)
        if math.prod(grid) != pos.shape[1]:
            raise CheckpointError(f"source_grid {grid} does not match pos_embed with {pos.shape[1]} positions")
        if grid != tuple(model.grid):
            logger.info("interpolating pos_embed from grid %s to %s", grid, tuple(model.grid))
        out["pos_embed"] = resize_pos_embed(pos, grid, model.grid)
    return out


def load_pretrained_into_classifier(
    model: nn.Module,
    checkpoint: Union[PathLike, Mapping[str, Any]],
    *,
    source_grid: Optional[Sequence[int]] = None,
) -> Tuple[List[str], List[str]]:
    """Initialise a classifier from a pretraining checkpoint (file or dict) for finetuning.

    Decoder keys are dropped, ``pos_embed`` is interpolated to the classifier's grid (another
    clip length or size); missing keys (e.g. ``fc_norm``, ``head``) keep their init. Returns
    (missing, unexpected) key lists, which are also logged. Shapes that do not fit raise.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = safe_load(checkpoint)
    state = classifier_state_from_pretraining(model_state_dict(checkpoint), model, source_grid)
    own = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise CheckpointError("checkpoint shapes do not fit the model: " + "; ".join(wrong))
    result = model.load_state_dict(state, strict=False)
    logger.info("loaded pretrained weights; missing keys: %s; unexpected keys: %s",
                result.missing_keys, result.unexpected_keys)
    return list(result.missing_keys), list(result.unexpected_keys)
