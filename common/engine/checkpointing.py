"""Training-state checkpoints: save (atomically), find, resume; initial weights for a run.

A checkpoint is a dict: ``model`` (the unwrapped state dict, so official-style loaders work),
``optimizer``, ``scaler`` (None without fp16), ``epoch`` (completed epochs), ``iteration``
(optimizer steps done in total), ``epoch_iteration`` (steps done inside ``epoch``), ``cfg``
(the resolved YAML), ``rng`` (every rank's global RNG states, a list indexed by rank) and
``epoch_sums`` (every rank's running sums of the epoch in progress, so that a run resumed in
mid-epoch logs the same epoch figures as an uninterrupted one). ``checkpoint-last.pth`` is
rewritten on every save; ``checkpoint-EPOCH.pth`` is kept every ``TRAIN.CHECKPOINT_PERIOD`` epochs.
Every file is written to a temp file and renamed, so a kill or a full disk leaves the previous
checkpoint complete; a failed save stops the run with ``CheckpointSaveError``. A checkpoint that
cannot be loaded anyway (truncated by a full disk or a copy) is skipped on resume for the newest
one that loads.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from common.checkpoint import (PRETRAIN_ONLY_PREFIXES, CheckpointError, atomic_save, check_finite,
                               load_pretrained_into_classifier, model_state_dict, safe_load)
from common.engine.distributed import DistInfo, all_gather_objects
from common.engine.rng import capture_rng_state, restore_rng_state
from common.errors import UserError

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoint-last.pth"
EPOCH_CHECKPOINT = re.compile(r"^checkpoint-(\d+)\.pth$")
TRAINING_STATE_KEYS = ("model", "optimizer", "epoch", "iteration", "rng")
# Classifier parts that starting weights need not hold (they are new for finetuning).
HEAD_PREFIXES = ("head.", "fc_norm.")
EpochSums = Dict[str, float]


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


def is_engine_checkpoint(name: str) -> bool:
    """True for the names the engine gives checkpoints: ``checkpoint-last.pth``, ``checkpoint-EPOCH.pth``."""
    return name == LAST_CHECKPOINT or bool(EPOCH_CHECKPOINT.match(name))


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
    epoch_sums: Optional[EpochSums] = None,
) -> Optional[str]:
    """Write ``checkpoint-last.pth`` (and ``checkpoint-EPOCH.pth`` if asked) from the main rank.

    ``epoch_sums``: this rank's running sums of the epoch in progress (a mid-epoch save).
    Every rank must call it (RNG states and sums are gathered); returns the path on the main rank.
    """
    rng_states = all_gather_objects(capture_rng_state())
    all_sums = all_gather_objects(epoch_sums)
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
        "epoch_sums": all_sums if epoch_sums is not None else None,
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


def resume_candidates(output_dir: str) -> List[str]:
    """The checkpoints a run may resume from, newest first: ``checkpoint-last.pth``, then the
    ``checkpoint-EPOCH.pth`` files by decreasing epoch."""
    names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    epochs = sorted((int(m.group(1)) for m in map(EPOCH_CHECKPOINT.match, names) if m), reverse=True)
    ordered = ([LAST_CHECKPOINT] if LAST_CHECKPOINT in names else []) + [epoch_checkpoint_name(e) for e in epochs]
    return [os.path.join(output_dir, name) for name in ordered]


def load_resume_state(output_dir: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """``(path, state)`` of the newest checkpoint in ``output_dir`` that loads as a training state,
    or None when there is none. A checkpoint that does not load (truncated, empty, not a
    training state) is skipped with a warning saying why; when none loads, ``CheckpointError``
    names every file tried and why it failed."""
    failures: List[str] = []
    for path in resume_candidates(output_dir):
        try:
            state = _training_state(path)
        except CheckpointError as err:
            logger.warning("cannot resume from %s, skipping it: %s", path, err)
            failures.append(str(err))
            continue
        if failures:
            logger.warning("resuming from %s, the newest checkpoint that loads", path)
        return path, state
    if failures:
        raise CheckpointError(f"no checkpoint in {output_dir} can be resumed from; tried:\n  " + "\n  ".join(failures)
                              + f"\nmove the broken files out of {output_dir} to start over there, or choose "
                                "another OUTPUT_DIR")
    return None


def _training_state(path: str) -> Dict[str, Any]:
    """``safe_load(path)``, refused unless it holds a whole training state."""
    state = safe_load(path)
    missing = [key for key in TRAINING_STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint of this engine (no {', '.join(missing)})")
    return state


def resume_training_state(
    path: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    rank: int = 0,
    state: Optional[Mapping[str, Any]] = None,
) -> Position:
    """Load model, optimizer, scaler and this rank's RNG states from ``path`` (or from ``state``,
    already loaded from it); returns where to continue. With more ranks than saved RNG states,
    rank ``r`` takes state ``r % saved``."""
    state = safe_load(path) if state is None else state
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"][rank % len(state["rng"])])
    position = Position(state["epoch"], state["iteration"], state.get("epoch_iteration", 0))
    logger.info("resumed from %s at epoch %d, iteration %d", path, position.epoch, position.iteration)
    return position


def saved_epoch_sums(state: Mapping[str, Any], rank: int = 0) -> Optional[EpochSums]:
    """This rank's running sums of the epoch a mid-epoch checkpoint stopped in (None at an epoch's
    end, or from a checkpoint written before sums were saved)."""
    sums = state.get("epoch_sums")
    if not sums or state.get("epoch_iteration", 0) == 0:
        return None
    return sums[rank % len(sums)]


def load_initial_weights(model: nn.Module, path: str, *, into_classifier: bool) -> None:
    """Start a run from ``path`` (ours or an official ConvMAE checkpoint).

    The weights may sit under ``model`` or ``state_dict`` or be the whole file, with or without a
    DDP ``module.`` prefix. Classifiers get pretraining weights through
    ``load_pretrained_into_classifier`` (decoder dropped, position embedding interpolated);
    other models load non-strictly. Every encoder parameter (all but the classifier head and
    the decoder) must come from the file: ``CheckpointError`` lists what matched and what did
    not, rather than training from random weights; it names the tensors holding NaN or inf too.
    """
    weights = model_state_dict(safe_load(path))
    check_finite(weights, path)
    if into_classifier:
        missing, unexpected = load_pretrained_into_classifier(model, weights)
    else:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    check_encoder_loaded(model, missing, path)
    logger.info("loaded %s; missing keys %s; unexpected keys %s", path, list(missing), list(unexpected))


def check_encoder_loaded(model: nn.Module, missing: Iterable[str], path: str) -> None:
    """``CheckpointError`` unless every encoder key of ``model`` (head and decoder aside) was loaded."""
    encoder = [k for k in model.state_dict() if not k.startswith(HEAD_PREFIXES + PRETRAIN_ONLY_PREFIXES)]
    missing = set(missing)
    unmatched = [k for k in encoder if k in missing]
    if unmatched:
        matched = [k for k in encoder if k not in missing]
        raise CheckpointError(
            f"TRAIN.CHECKPOINT_FILE_PATH {path} does not fit the model: {len(matched)} of {len(encoder)} encoder "
            f"weights matched ({_some(matched)}); not matched: {_some(unmatched)}. Expected a checkpoint of "
            f"the same architecture, its weights under 'model' or 'state_dict' or at the top level")


def _some(keys: Sequence[str], limit: int = 8) -> str:
    """``a, b, c, ... (N more)`` for an error message."""
    if not keys:
        return "none"
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
