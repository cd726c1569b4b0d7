"""What a training run keeps on disk, whether the disk can hold it, and the rotation of periodic copies.

A run keeps ``checkpoint-last.pth``; a full-state copy ``checkpoint-EPOCH.pth`` every
``TRAIN.CHECKPOINT_PERIOD`` epochs and at the last one, of which the newest
``TRAIN.KEEP_CHECKPOINTS`` are kept (0: all); a weights-only copy ``weights-EPOCH.pth`` every
``TRAIN.WEIGHTS_PERIOD`` epochs (0: none), never deleted by the rotation, for finetuning, linear probing, export
and inference (a third of a full copy with AdamW's two moments).

An epoch's save writes ``checkpoint-last.pth`` first, then the copies; it records each copy it
writes (name, size, inode, modification time, save id) in ``OUTPUT_DIR/.periodic-checkpoints.json``.
A run resumed after a kill between two writes rewrites the copies its last save did not record.
A periodic copy is deleted only if it is listed there and its file is still that one (a file the
user put or replaced under such a name stays, with a warning). Anything else in the folder is
never touched.

Before the first step the run logs ``checkpoints: ~X GB over the run (N files), free on
OUTPUT_DIR: Y GB`` and refuses with ``DiskSpaceError`` when the disk cannot hold the next save
(with ``OVERWRITE True``, counting the previous run's checkpoints it is about to delete as free).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from common.engine.builders import attach_probe_head, build_model
from common.engine.checkpointing import (EPOCH_CHECKPOINT, LAST_CHECKPOINT, Position, epoch_checkpoint_name,
                                         is_engine_checkpoint, weights_checkpoint_name, weights_only,
                                         write_checkpoint, write_last_checkpoint)
from common.engine.distributed import DistInfo, all_gather_objects
from common.errors import UserError
from common.files import atomic_write_json

logger = logging.getLogger(__name__)

RECORD_FILE = ".periodic-checkpoints.json"  # the copies this run wrote
# Tensors each SOLVER.OPTIMIZING_METHOD keeps per trainable parameter (AdamW: both moments; SGD
# and LARS: the momentum); another: the upper bound.
OPTIMIZER_MOMENTS = {"adamw": 2, "sgd": 1, "lars": 1}
DEFAULT_MOMENTS = 2
# torch.save's file beyond the tensors' bytes (measured on the toy checkpoints: 300-350 bytes a
# tensor of zip records and pickle; RNG states and config ~20 kB): what makes small estimates right.
TENSOR_OVERHEAD = 320
STATE_OVERHEAD = 20_000


class DiskSpaceError(UserError, RuntimeError):
    """The filesystem of ``OUTPUT_DIR`` cannot hold the run's next checkpoint save."""


@dataclass(frozen=True)
class CheckpointPlan:
    """Which checkpoint files a run writes and keeps, and how big they are (bytes)."""

    max_epoch: int
    period: int  # TRAIN.CHECKPOINT_PERIOD
    keep: int  # TRAIN.KEEP_CHECKPOINTS, 0: all
    weights_period: int  # TRAIN.WEIGHTS_PERIOD, 0: none
    full_bytes: int  # one full training state
    weights_bytes: int  # one weights-only copy

    def keeps_copy(self, epoch: int) -> bool:
        """Whether the save after ``epoch`` completed epochs writes ``checkpoint-EPOCH.pth``."""
        return epoch % self.period == 0 or epoch == self.max_epoch

    def keeps_weights(self, epoch: int) -> bool:
        """Whether the save after ``epoch`` completed epochs writes ``weights-EPOCH.pth``."""
        return self.weights_period > 0 and epoch % self.weights_period == 0

    def files_at_end(self) -> Tuple[int, int]:
        """(full-state files, weights-only files) in ``OUTPUT_DIR`` when the run has finished."""
        epochs = range(1, self.max_epoch + 1)
        copies = sum(map(self.keeps_copy, epochs))
        return 1 + (min(copies, self.keep) if self.keep else copies), sum(map(self.keeps_weights, epochs))

    def bytes_at_end(self) -> int:
        full, weights = self.files_at_end()
        return full * self.full_bytes + weights * self.weights_bytes

    def next_save_bytes(self, epoch: int) -> int:
        """Bytes the save after ``epoch`` completed epochs writes before it can delete anything
        (``checkpoint-last.pth`` is replaced only once its new version is complete)."""
        return (self.full_bytes * (1 + self.keeps_copy(epoch))
                + self.weights_bytes * self.keeps_weights(epoch))

    def files_of_save(self, epoch: int) -> List[str]:
        return ([epoch_checkpoint_name(epoch)] if self.keeps_copy(epoch) else []) + (
            [weights_checkpoint_name(epoch)] if self.keeps_weights(epoch) else []) + [LAST_CHECKPOINT]


def state_bytes(model: nn.Module, method: str, optimizer: Optional[torch.optim.Optimizer] = None) -> Tuple[int, int]:
    """(full training state, weights only) in bytes on disk: the model's tensors, plus the
    optimizer's per-parameter state (counted where it exists, as after a resume, else from
    ``method``, ``SOLVER.OPTIMIZING_METHOD``: AdamW keeps two moments and a step), plus
    ``torch.save``'s overhead. Sizes come from shapes and dtypes only: a model on the meta device works."""
    model_tensors = list(model.state_dict().values())
    weights = sum(t.numel() * t.element_size() for t in model_tensors) + TENSOR_OVERHEAD * len(model_tensors)
    moments = OPTIMIZER_MOMENTS.get(method, DEFAULT_MOMENTS)
    optimizer_bytes = 0
    for param in (p for p in model.parameters() if p.requires_grad):
        state = optimizer.state.get(param, {}) if optimizer is not None else {}
        saved = [t for t in state.values() if isinstance(t, torch.Tensor)]
        if saved:
            optimizer_bytes += sum(t.numel() * t.element_size() + TENSOR_OVERHEAD for t in saved)
        else:  # the moments and a step count
            optimizer_bytes += moments * (param.numel() * param.element_size() + TENSOR_OVERHEAD) + TENSOR_OVERHEAD
    return weights + optimizer_bytes + STATE_OVERHEAD, weights + STATE_OVERHEAD // 4


def checkpoint_plan(cfg: CfgNode, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None) -> CheckpointPlan:
    """The plan of a run of ``cfg`` training ``model`` (with ``optimizer``, whose state counts if it has one)."""
    full, weights = state_bytes(model, cfg.SOLVER.OPTIMIZING_METHOD, optimizer)
    return CheckpointPlan(max_epoch=cfg.SOLVER.MAX_EPOCH, period=cfg.TRAIN.CHECKPOINT_PERIOD,
                          keep=cfg.TRAIN.KEEP_CHECKPOINTS, weights_period=cfg.TRAIN.WEIGHTS_PERIOD,
                          full_bytes=full, weights_bytes=weights)


def plan_of_config(cfg: CfgNode, job: str) -> CheckpointPlan:
    """The plan of the training ``job`` (pretrain, finetune, linprobe) of ``cfg``, without running it:
    its model is built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = build_model(cfg, pretraining=job == "pretrain", crop_size=cfg.DATA.TRAIN_CROP_SIZE)
        if job == "linprobe":
            model = attach_probe_head(model)
    return checkpoint_plan(cfg, model)


def free_bytes(path: str) -> int:
    """Free bytes on the filesystem of ``path`` (for this user)."""
    return shutil.disk_usage(path).free


def budget_report(cfg: CfgNode, job: str) -> str:
    """Two lines for ``tools/checkpoint_budget.py``: the size of one full state and of one
    weights-only copy, then the preflight line (free space where ``OUTPUT_DIR`` is or would be)."""
    plan = plan_of_config(cfg, job)
    where = os.path.abspath(cfg.OUTPUT_DIR)
    while not os.path.isdir(where):
        where = os.path.dirname(where)
    return (f"{cfg.MODEL.NAME} ({job}): a full training state ~{gigabytes(plan.full_bytes)} GB, a weights-only copy "
            f"~{gigabytes(plan.weights_bytes)} GB\n{preflight_line(plan, free_bytes(where))}")


def gigabytes(size: float) -> str:
    """``size`` bytes in GB, to 3 significant digits (whole GB from 1000 on)."""
    value = size / 1e9
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def preflight_line(plan: CheckpointPlan, free: int) -> str:
    """``checkpoints: ~X GB over the run (N files), free on OUTPUT_DIR: Y GB``."""
    full, weights = plan.files_at_end()
    return (f"checkpoints: ~{gigabytes(plan.bytes_at_end())} GB over the run ({full + weights} files), "
            f"free on OUTPUT_DIR: {gigabytes(free)} GB")


def check_disk_space(output_dir: str, plan: CheckpointPlan, position: Position, dist: DistInfo, *,
                     overwrite: bool = False) -> None:
    """Before the first step: log the preflight line, warn when the whole run will not fit, and
    raise ``DiskSpaceError`` (on every rank) when the next save does not fit. ``overwrite``: the
    engine checkpoints in ``output_dir`` are about to be deleted (``OVERWRITE True``): their space counts."""
    problem = _disk_space_problem(output_dir, plan, position, overwrite) if dist.is_main else ""
    problem = all_gather_objects(problem)[0]
    if problem:
        raise DiskSpaceError(problem)


def _disk_space_problem(output_dir: str, plan: CheckpointPlan, position: Position, overwrite: bool) -> str:
    held = sum(os.path.getsize(os.path.join(output_dir, name)) for name in os.listdir(output_dir)
               if is_engine_checkpoint(name) and os.path.isfile(os.path.join(output_dir, name)))
    disk_free = free_bytes(output_dir)
    free = disk_free + (held if overwrite else 0)  # OVERWRITE is about to delete what the folder holds
    logger.info("%s", preflight_line(plan, free))
    if plan.bytes_at_end() > disk_free + held:  # at the end, what it holds is deleted or replaced either way
        logger.warning("the run's checkpoints (~%s GB) will not fit in the %s GB free on OUTPUT_DIR %s: raise "
                       "TRAIN.CHECKPOINT_PERIOD, set TRAIN.KEEP_CHECKPOINTS or free space", gigabytes(plan.bytes_at_end()),
                       gigabytes(free), output_dir)
    epoch = position.epoch + 1
    needed = plan.next_save_bytes(epoch)
    if free >= needed:
        return ""
    return (f"OUTPUT_DIR {output_dir} has {gigabytes(free)} GB free, the next checkpoint save needs ~{gigabytes(needed)} "
            f"GB ({', '.join(plan.files_of_save(epoch))} after epoch {epoch}); free space or choose another OUTPUT_DIR")


def epoch_outputs(plan: CheckpointPlan, epoch: int, record: Dict[str, Any]) -> Dict[str, Any]:
    """What the save after ``epoch`` completed epochs writes besides ``checkpoint-last.pth``, kept in
    it (``epoch_outputs``) so that a run killed half-way through rebuilds the rest when it resumes:
    a save id, whether the periodic and the weights-only copies are due, the ``log.jsonl`` record."""
    return {"save_id": secrets.token_hex(8), "copy": plan.keeps_copy(epoch), "weights": plan.keeps_weights(epoch),
            "record": record}


def save_epoch_checkpoints(output_dir: str, state: Dict[str, Any], keep: int) -> None:
    """The end-of-epoch save (main rank): ``checkpoint-last.pth`` first (it holds everything the
    rest is made from), then the copies its ``epoch_outputs`` asks for."""
    write_last_checkpoint(output_dir, state)
    write_epoch_copies(output_dir, state, keep)


def write_epoch_copies(output_dir: str, state: Dict[str, Any], keep: int, *, only_missing: bool = False) -> List[str]:
    """Write the periodic copy (then delete the copies this run wrote beyond the newest ``keep``) and
    the weights-only copy that the epoch-end checkpoint ``state`` asks for; ``only_missing``: those
    that its save did not write (a resume after a kill between two writes). Returns the paths written."""
    outputs = state.get("epoch_outputs")
    if not outputs or state.get("epoch_iteration", 0) != 0:
        return []
    epoch, written = state["epoch"], []
    for name, due, content in ((epoch_checkpoint_name(epoch), outputs["copy"], state),
                               (weights_checkpoint_name(epoch), outputs["weights"], weights_only(state))):
        if due and not (only_missing and _written_by(output_dir, name, outputs["save_id"])):
            write_checkpoint(content, os.path.join(output_dir, name))
            record_copy(output_dir, name, outputs["save_id"])
            written.append(os.path.join(output_dir, name))
    if outputs["copy"]:
        remove_old_copies(output_dir, keep)
    return written


def _identity(path: str) -> Dict[str, int]:
    stat = os.stat(path)
    return {"size": stat.st_size, "inode": stat.st_ino, "mtime_ns": stat.st_mtime_ns}


def _same_file(path: str, entry: Dict[str, Any]) -> bool:
    """Whether ``path`` is still the file ``entry`` of the record describes."""
    return os.path.isfile(path) and all(entry.get(key) == value for key, value in _identity(path).items())


def _written_by(output_dir: str, name: str, save_id: str) -> bool:
    """Whether ``name`` is the copy the save ``save_id`` wrote, unchanged since."""
    entry = _read_record(output_dir).get(name)
    return entry is not None and entry.get("save") == save_id and _same_file(os.path.join(output_dir, name), entry)


def _read_record(output_dir: str) -> Dict[str, Dict[str, Any]]:
    path = os.path.join(output_dir, RECORD_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError:
        logger.warning("%s is not valid JSON: the copies it listed are kept", path)
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(output_dir: str, record: Dict[str, Dict[str, Any]]) -> None:
    atomic_write_json(os.path.join(output_dir, RECORD_FILE), record, indent=1)


def record_copy(output_dir: str, name: str, save_id: str) -> None:
    """Note that this run has just written the copy ``name`` in the save ``save_id``."""
    record = _read_record(output_dir)
    record[name] = {**_identity(os.path.join(output_dir, name)), "save": save_id}
    _write_record(output_dir, record)


def forget_copies_after(output_dir: str, epoch: int) -> None:
    """A rewind to the end of ``epoch``: the periodic copies this run wrote of later epochs are
    forgotten (the run writes them again when it gets there), so that they do not hold places among
    the ``TRAIN.KEEP_CHECKPOINTS`` newest and push out the copies it goes on from."""
    record = _read_record(output_dir)
    later = [name for name in record if EPOCH_CHECKPOINT.match(name) and int(EPOCH_CHECKPOINT.match(name).group(1)) > epoch]
    if later:
        _write_record(output_dir, {name: entry for name, entry in record.items() if name not in later})


def remove_old_copies(output_dir: str, keep: int) -> List[str]:
    """Delete the periodic copies this run wrote beyond the newest ``keep`` (0: keep all); returns
    the deleted paths. A listed file that is gone is forgotten; one that changed since is kept
    (and forgotten, with a warning)."""
    if keep <= 0:
        return []
    record = _read_record(output_dir)
    for name in [name for name in record if not os.path.lexists(os.path.join(output_dir, name))]:
        del record[name]  # gone (deleted by hand or by OVERWRITE): it must not hold a place among the kept
    copies = [name for name in record if EPOCH_CHECKPOINT.match(name)]
    newest_first = sorted(copies, key=lambda name: int(EPOCH_CHECKPOINT.match(name).group(1)), reverse=True)
    deleted = []
    for name in newest_first[keep:]:
        path = os.path.join(output_dir, name)
        if _same_file(path, record.pop(name)):
            os.remove(path)
            deleted.append(path)
        elif os.path.lexists(path):
            logger.warning("%s changed since this run wrote it: not deleted (TRAIN.KEEP_CHECKPOINTS)", path)
    if deleted:
        logger.info("deleted %s (TRAIN.KEEP_CHECKPOINTS %d)", ", ".join(deleted), keep)
    _write_record(output_dir, record)
    return deleted
