"""Training-state checkpoints: save (atomically), find, resume; initial weights for a run.

A checkpoint is a dict: ``model`` (the unwrapped state dict, so official-style loaders work),
``optimizer``, ``scaler`` (None without fp16), ``epoch`` (completed epochs), ``iteration``
(optimizer steps done in total), ``epoch_iteration`` (steps done inside ``epoch``), ``cfg``
(the resolved YAML) and ``rng`` (every rank's global RNG states, a list indexed by rank).
``checkpoint-last.pth`` is rewritten
on every save; ``checkpoint-EPOCH.pth`` is kept every ``TRAIN.CHECKPOINT_PERIOD`` epochs.
Every file is written to a temp file and renamed, so a kill or a full disk leaves the previous
checkpoint complete; a failed save stops the run with ``CheckpointSaveError``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import nn

from common.checkpoint import atomic_save, load_pretrained_into_classifier, model_state_dict, safe_load
from common.engine.distributed import DistInfo, all_gather_objects
from common.engine.rng import capture_rng_state, restore_rng_state
from common.errors import UserError

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoint-last.pth"


class CheckpointSaveError(UserError, RuntimeError):
    """A checkpoint could not be written (disk full, no permission); the old file is intact."""


@dataclass(frozen=True)
class Position:
    """Where training stands: completed epochs, total steps, steps inside the current epoch."""

    epoch: int = 0
    iteration: int = 0
    epoch_iteration: int = 0


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint kept after ``epoch`` completed epochs."""
    return f"checkpoint-{epoch}.pth"


def save_training_state(
    output_dir: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    position: Position,
    cfg_yaml: str,
    keep_epoch_copy: bool,
    dist: DistInfo,
) -> Optional[str]:
    """Write ``checkpoint-last.pth`` (and ``checkpoint-EPOCH.pth`` if asked) from the main rank.

    Every rank must call it (the RNG states are gathered); returns the path on the main rank.
    """
    rng_states = all_gather_objects(capture_rng_state())
    if not dist.is_main:
        return None
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": position.epoch,
        "iteration": position.iteration,
        "epoch_iteration": position.epoch_iteration,
        "cfg": cfg_yaml,
        "rng": rng_states,
    }
    last = os.path.join(output_dir, LAST_CHECKPOINT)
    _save_or_explain(state, last)
    if keep_epoch_copy:
        _save_or_explain(state, os.path.join(output_dir, epoch_checkpoint_name(position.epoch)))
    logger.info("saved %s (epoch %d, iteration %d)", last, position.epoch, position.iteration)
    return last


def _save_or_explain(state: Dict[str, Any], path: str) -> None:
    """``atomic_save``; an OS error (disk full, no permission) becomes a ``CheckpointSaveError``
    that says the file under ``path`` is still the previous, complete one."""
    try:
        atomic_save(state, path)
    except OSError as err:
        before = "keeps the previous checkpoint" if os.path.exists(path) else "was not written"
        raise CheckpointSaveError(f"could not save checkpoint {path}: {err.strerror or err} "
                                  f"[errno {err.errno}]; {path} {before}; free space or fix "
                                  f"permissions, then rerun to resume") from err


def find_resume_checkpoint(output_dir: str) -> Optional[str]:
    """``OUTPUT_DIR/checkpoint-last.pth`` if it exists."""
    path = os.path.join(output_dir, LAST_CHECKPOINT)
    return path if os.path.isfile(path) else None


def resume_training_state(
    path: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    rank: int = 0,
) -> Position:
    """Load model, optimizer, scaler and this rank's RNG states from ``path``; returns where to
    continue. With more ranks than saved RNG states, rank ``r`` takes state ``r % saved``."""
    state = safe_load(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"][rank % len(state["rng"])])
    position = Position(state["epoch"], state["iteration"], state.get("epoch_iteration", 0))
    logger.info("resumed from %s at epoch %d, iteration %d", path, position.epoch, position.iteration)
    return position


def load_initial_weights(model: nn.Module, path: str, *, into_classifier: bool) -> None:
    """Start a run from ``path`` (ours or an official ConvMAE checkpoint).

    Classifiers get pretraining weights through ``load_pretrained_into_classifier`` (decoder
    dropped, position embedding interpolated); other models load non-strictly. Missing and
    unexpected keys are logged.
    """
    checkpoint = safe_load(path)
    if into_classifier:
        missing, unexpected = load_pretrained_into_classifier(model, checkpoint)
    else:
        missing, unexpected = model.load_state_dict(model_state_dict(checkpoint), strict=False)
    logger.info("loaded %s; missing keys %s; unexpected keys %s", path, list(missing), list(unexpected))
