"""Training-state checkpoints: save (atomically), find, resume; initial weights for a run.

A checkpoint is a dict: ``model`` (the unwrapped state dict, so official-style loaders work),
``optimizer``, ``scaler`` (None without fp16), ``epoch`` (completed epochs), ``iteration``
(optimizer steps done in total), ``epoch_iteration`` (steps done inside ``epoch``), ``cfg``
(the resolved YAML), ``rng`` (every rank's global RNG states, a list indexed by rank),
``epoch_sums`` (every rank's running sums of the epoch in progress, so that a run resumed in
mid-epoch logs the same epoch figures as an uninterrupted one), ``rewinds`` (the divergence
recovery's state, ``common.engine.rewind``) and, at an epoch's end, ``epoch_outputs`` (the epoch's
``log.jsonl`` record and which copies its save writes). ``checkpoint-last.pth`` is rewritten on
every save, first; the ``checkpoint-EPOCH.pth`` and weights-only ``weights-EPOCH.pth`` copies
(``common.engine.checkpoint_budget`` says which are kept) and the ``log.jsonl`` record follow, and
a run killed between two of these writes rebuilds the rest from ``checkpoint-last.pth`` when it
resumes. Every file is written to a temp file and renamed, so a
kill or a full disk leaves the previous checkpoint complete; a failed write of any kind stops
the run with ``CheckpointSaveError``. Weights that are not finite are never saved. A checkpoint
that cannot be loaded anyway (truncated by a full disk or a copy) is skipped on resume for the
newest one that loads.
"""
from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import nn

from common.checkpoint import (PRETRAIN_ONLY_PREFIXES, CheckpointError, atomic_save, check_finite,
                               load_pretrained_into_classifier, model_state_dict, non_finite_tensors, safe_load)
from common.engine.distributed import DistInfo, all_gather_objects
from common.engine.progress import JSON_LOG_FILE
from common.engine.rng import capture_rng_state, restore_rng_state
from common.errors import UserError, some_of
from common.files import read_json_lines

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoint-last.pth"
EPOCH_CHECKPOINT = re.compile(r"^checkpoint-(\d+)\.pth$")
WEIGHTS_CHECKPOINT = re.compile(r"^weights-(\d+)\.pth$")
WEIGHTS_ONLY_KEYS = ("model", "epoch", "iteration", "cfg")  # what a weights-EPOCH.pth copy holds
TRAINING_STATE_KEYS = ("model", "optimizer", "epoch", "iteration", "rng")
# Classifier parts that starting weights need not hold (they are new for finetuning).
HEAD_PREFIXES = ("head.", "fc_norm.")
EpochSums = Dict[str, float]


class CheckpointSaveError(UserError, RuntimeError):
    """A checkpoint could not be written (disk full, no permission); the old file is intact."""


# What to do about a failed write, by errno (the rest: the error says it).
SAVE_ERROR_FIXES = {
    errno.ENOSPC: "free space on its disk", errno.EDQUOT: "free space in your disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f)", errno.EACCES: "fix the permissions of OUTPUT_DIR",
    errno.EPERM: "fix the permissions of OUTPUT_DIR", errno.EROFS: "choose an OUTPUT_DIR on a writable disk",
    errno.EIO: "check the disk (an input/output error)",
}


@dataclass(frozen=True)
class Position:
    """Where training stands: completed epochs, total steps, steps inside the current epoch."""

    epoch: int = 0
    iteration: int = 0
    epoch_iteration: int = 0


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint kept after ``epoch`` completed epochs."""
    return f"checkpoint-{epoch}.pth"


def weights_checkpoint_name(epoch: int) -> str:
    """File name of the weights-only copy kept after ``epoch`` completed epochs."""
    return f"weights-{epoch}.pth"


def is_engine_checkpoint(name: str) -> bool:
    """True for the names the engine gives checkpoints: ``checkpoint-last.pth``, ``checkpoint-EPOCH.pth``,
    ``weights-EPOCH.pth``."""
    return name == LAST_CHECKPOINT or bool(EPOCH_CHECKPOINT.match(name) or WEIGHTS_CHECKPOINT.match(name))


def gather_training_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    position: Position,
    cfg_yaml: str,
    dist: DistInfo,
    epoch_sums: Optional[EpochSums] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Optional[Dict[str, Any]]:
    """The checkpoint dict on the main rank (None elsewhere); every rank must call it (RNG states
    and ``epoch_sums``, this rank's running sums of the epoch in progress, are gathered).
    ``extra``: more entries (``rewinds``, ``epoch_outputs``)."""
    rng_states = all_gather_objects(capture_rng_state())
    all_sums = all_gather_objects(epoch_sums)
    if not dist.is_main:
        return None
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": position.epoch,
        "iteration": position.iteration,
        "epoch_iteration": position.epoch_iteration,
        "cfg": cfg_yaml,
        "rng": rng_states,
        "epoch_sums": all_sums if epoch_sums is not None else None,
        **(extra or {}),
    }


def save_training_state(
    output_dir: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    position: Position,
    cfg_yaml: str,
    dist: DistInfo,
    epoch_sums: Optional[EpochSums] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Optional[str]:
    """Write ``checkpoint-last.pth`` from the main rank (a mid-epoch or rewind save; an epoch's end
    goes through ``checkpoint_budget.save_epoch_checkpoints``, which also writes its copies).

    Every rank must call it (see ``gather_training_state``); returns the path on the main rank.
    """
    state = gather_training_state(model=model, optimizer=optimizer, scaler=scaler, position=position,
                                  cfg_yaml=cfg_yaml, dist=dist, epoch_sums=epoch_sums, extra=extra)
    if state is None:
        return None
    return write_last_checkpoint(output_dir, state)


def write_last_checkpoint(output_dir: str, state: Dict[str, Any]) -> str:
    """Write ``state`` as ``OUTPUT_DIR/checkpoint-last.pth``; returns its path."""
    last = os.path.join(output_dir, LAST_CHECKPOINT)
    write_checkpoint(state, last)
    logger.info("saved %s (epoch %d, iteration %d)", last, state["epoch"], state["iteration"])
    return last


def weights_only(state: Mapping[str, Any]) -> Dict[str, Any]:
    """What a ``weights-EPOCH.pth`` copy holds: the model's weights (no optimizer, about a third of
    the size with AdamW), where it stood and the config, with ``weights_only`` True. A finetune,
    linear probe, export, prediction or feature extraction starts from it as from a full copy."""
    return {**{key: state[key] for key in WEIGHTS_ONLY_KEYS}, "weights_only": True}


def write_checkpoint(state: Dict[str, Any], path: str) -> None:
    """``atomic_save``; a failed write of any kind (disk full, file size limit, no permission, I/O
    error; inside ``torch.save`` or after it) becomes a ``CheckpointSaveError`` that says the file
    under ``path`` is still the previous, complete one. Non-finite weights are refused (a bug
    if it happens: the loop checks them before saving)."""
    broken = non_finite_tensors(state["model"])
    if broken:
        raise ValueError(f"refusing to save {path}: non-finite weights in {', '.join(broken[:8])}")
    try:
        atomic_save(state, path)
    except OSError as err:
        before = "keeps the previous checkpoint" if os.path.exists(path) else "was not written"
        fix = SAVE_ERROR_FIXES.get(err.errno, "fix the cause")
        raise CheckpointSaveError(f"could not save checkpoint {path}: {err.strerror or err} "
                                  f"[errno {err.errno}]; {path} {before}; {fix}, then rerun to resume") from None


def missing_epoch_record(output_dir: str, state: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The ``log.jsonl`` record an epoch-end checkpoint ``state`` holds (``epoch_outputs``) when
    ``OUTPUT_DIR/log.jsonl`` has no record of that epoch (the run stopped between the checkpoint and
    the record), else None."""
    record = (state.get("epoch_outputs") or {}).get("record")
    if not record or state.get("epoch_iteration", 0) != 0:
        return None
    path = os.path.join(output_dir, JSON_LOG_FILE)
    logged = read_json_lines(path) if os.path.isfile(path) else []
    if any(r.get("epoch") == record["epoch"] and "train_loss" in r for r in logged):
        return None
    return dict(record)


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
    verb: str = "resumed",
) -> Position:
    """Load model, optimizer, scaler and this rank's RNG states from ``path`` (or from ``state``,
    already loaded from it); returns where to continue. With more ranks than saved RNG states,
    rank ``r`` takes state ``r % saved``. ``verb``: what the log line says was done."""
    state = safe_load(path) if state is None else state
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"][rank % len(state["rng"])])
    position = Position(state["epoch"], state["iteration"], state.get("epoch_iteration", 0))
    logger.info("%s from %s at epoch %d, iteration %d", verb, path, position.epoch, position.iteration)
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
            f"weights matched ({some_of(matched)}); not matched: {some_of(unmatched)}. Expected a checkpoint of "
            f"the same architecture, its weights under 'model' or 'state_dict' or at the top level")

