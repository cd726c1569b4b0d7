"""Recovery from divergence: rewind to the newest checkpoint with finite weights and change what led there.

The loop raises ``NonFiniteTrip`` when more than ``TRAIN.MAX_NONFINITE_STEPS`` steps were skipped
(non-finite loss or gradient), when every step of an epoch was skipped, or when the weights are
not finite at an epoch's end (they are never saved so). ``rewind`` then, up to
``TRAIN.MAX_REWINDS`` times over the whole run:

1. loads the newest checkpoint of ``OUTPUT_DIR`` whose weights and optimizer state are finite
   (``checkpoint-last.pth``, then the ``checkpoint-EPOCH.pth`` copies);
2. redraws the data order of the rest of that epoch (the samples not yet seen, in another order);
   on a second rewind to the same checkpoint also turns reduced-precision autocast off for the
   decoder and the loss, and on a third off everywhere, as ConvMAE's authors did by hand;
3. logs a line and a ``log.jsonl`` record (``event: rewind``: iteration, reason, checkpoint,
   what changed) and saves that state with the rewind state as ``checkpoint-last.pth``, so that a
   requeue or a rerun continues with the change instead of walking into the same divergence.

After ``TRAIN.MAX_REWINDS`` rewinds, or without a checkpoint to go back to, the run stops with
``DivergenceError``: one line, the last checkpoint untouched.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from common.checkpoint import CheckpointError, non_finite_tensors, safe_load
from common.engine.checkpoint_budget import forget_copies_after
from common.engine.checkpointing import (TRAINING_STATE_KEYS, resume_candidates, resume_training_state,
                                         save_training_state, saved_epoch_sums)
from common.engine.distributed import all_gather_objects
from common.engine.precision import Precision
from common.errors import RunStopped

if TYPE_CHECKING:
    from common.engine.progress import MetricsWriter
    from common.engine.trainer import StepConfig, TrainState

logger = logging.getLogger(__name__)

# Autocast of the run, from the config's to none: each rewind to the same checkpoint goes one further.
PRECISION_LEVELS = ("configured", "decoder_fp32", "fp32")


class DivergenceError(RunStopped, RuntimeError):
    """The run diverged and cannot rewind (any more): it stops, the last checkpoint untouched."""


class NonFiniteTrip(Exception):
    """The training loop met divergence (``reason``) at ``iteration``: rewind, or stop."""

    def __init__(self, reason: str, iteration: int):
        super().__init__(reason)
        self.reason, self.iteration = reason, iteration


@dataclass
class RewindState:
    """What the rewinds of a run did, saved in its checkpoints (``rewinds``)."""

    history: List[Dict[str, Any]] = field(default_factory=list)  # one record per rewind
    redraws: List[List[int]] = field(default_factory=list)  # [epoch, from sample, salt]: reorder from there
    precision: str = PRECISION_LEVELS[0]

    @classmethod
    def of_checkpoint(cls, state: Optional[Mapping[str, Any]]) -> "RewindState":
        saved = (state or {}).get("rewinds") or {}
        return cls(history=[dict(r) for r in saved.get("history", [])],
                   redraws=[list(r) for r in saved.get("redraws", [])],
                   precision=saved.get("precision", PRECISION_LEVELS[0]))

    def to_checkpoint(self) -> Dict[str, Any]:
        return {"history": self.history, "redraws": self.redraws, "precision": self.precision}

    def redraws_for(self, epoch: int) -> List[Tuple[int, int]]:
        """``(from sample, salt)`` of the redraws of ``epoch`` (0-based), in order, for the sampler."""
        return [(start, salt) for e, start, salt in self.redraws if e == epoch]


def apply_precision(state: "TrainState", conf: "StepConfig") -> "StepConfig":
    """The loop's config with the rewind state's autocast: the decoder and loss of a model that has
    one (``decoder_autocast``) leave autocast, or the whole step runs in fp32."""
    level = state.rewinds.precision
    if level == "decoder_fp32" and hasattr(state.unwrapped, "decoder_autocast"):
        state.unwrapped.decoder_autocast = False
    elif level != "configured" and conf.precision.dtype is not None:
        return dataclasses.replace(conf, precision=Precision(dtype=None, device_type=conf.precision.device_type))
    return conf


def rewind(state: "TrainState", conf: "StepConfig", trip: NonFiniteTrip, *, max_rewinds: int, micro_batch: int,
           writer: Optional["MetricsWriter"]) -> "StepConfig":
    """Rewind after ``trip`` (see the module docstring); returns the loop's config to go on with.
    Every rank calls it; ``micro_batch``: samples per step on a rank (to place the redraw)."""
    done = len(state.rewinds.history)
    if done >= max_rewinds:
        after = f"after {done} rewind(s) " if max_rewinds else ""
        raise DivergenceError(f"{trip.reason}; stopping {after}(TRAIN.MAX_REWINDS = {max_rewinds}), the last checkpoint "
                              f"in {conf.output_dir} is untouched")
    path = all_gather_objects(newest_finite_checkpoint(conf.output_dir) if conf.dist.is_main else None)[0]
    if path is None:
        raise DivergenceError(f"{trip.reason}; no checkpoint in {conf.output_dir} with finite weights to rewind to: "
                              "stopping (check SOLVER.BASE_LR, and TRAIN.CHECKPOINT_FILE_PATH if the run starts from one)")
    saved = safe_load(path)
    if conf.dist.is_main:
        forget_copies_after(conf.output_dir, saved["epoch"])
    state.position = resume_training_state(path, model=state.unwrapped, optimizer=state.optimizer,
                                           scaler=state.scaler, rank=conf.dist.rank, state=saved, verb="rewound")
    state.epoch_sums = saved_epoch_sums(saved, conf.dist.rank)
    state.nonfinite_steps = 0
    change = _change(state, conf, same_region=_rewinds_to(state.rewinds, state.position.iteration))
    state.rewinds.redraws = [r for r in state.rewinds.redraws if r[0] >= state.position.epoch] + [
        [state.position.epoch, state.position.epoch_iteration * micro_batch, done + 1]]
    entry = {"rewind": done + 1, "iteration": trip.iteration, "reason": trip.reason, "checkpoint": path,
             "to_iteration": state.position.iteration, "change": change}
    state.rewinds.history.append(entry)
    logger.warning("rewind %d/%d at iteration %d: %s; back to %s (iteration %d); %s", done + 1, max_rewinds,
                   trip.iteration, trip.reason, path, state.position.iteration, change)
    if writer is not None:
        writer.write_event({"event": "rewind", **entry})
    save_training_state(conf.output_dir, model=state.unwrapped, optimizer=state.optimizer, scaler=state.scaler,
                        position=state.position, cfg_yaml=conf.cfg_yaml, dist=conf.dist,
                        epoch_sums=state.epoch_sums, extra={"rewinds": state.rewinds.to_checkpoint(),
                                                            **_epoch_record_of(saved)})
    return apply_precision(state, conf)


def _rewinds_to(rewinds: RewindState, iteration: int) -> int:
    """How many of the latest rewinds went back to ``iteration`` (the same region of the run)."""
    count = 0
    for entry in reversed(rewinds.history):
        if entry["to_iteration"] != iteration:
            break
        count += 1
    return count


def _change(state: "TrainState", conf: "StepConfig", *, same_region: int) -> str:
    """What this rewind changes (and sets ``state.rewinds.precision`` accordingly), as a phrase."""
    change = f"data order of the rest of epoch {state.position.epoch + 1} redrawn"
    dtype = conf.precision.dtype
    level = PRECISION_LEVELS.index(state.rewinds.precision)
    wanted = min(same_region, len(PRECISION_LEVELS) - 1)
    if dtype is None or wanted <= level:
        return change
    name = {"bfloat16": "bf16", "float16": "fp16"}.get(str(dtype).replace("torch.", ""), str(dtype))
    if wanted == 1 and hasattr(state.unwrapped, "decoder_autocast"):
        state.rewinds.precision = "decoder_fp32"
        return f"{change}; {name} autocast off for the decoder and loss"
    state.rewinds.precision = "fp32"
    return f"{change}; {name} autocast off everywhere"


def newest_finite_checkpoint(output_dir: str) -> Optional[str]:
    """The newest checkpoint of ``output_dir`` that loads as a training state with finite weights and
    optimizer state (``checkpoint-last.pth``, then the copies by decreasing epoch), or None."""
    for path in resume_candidates(output_dir):
        try:
            saved = safe_load(path)
        except CheckpointError as err:
            logger.warning("cannot rewind to %s: %s", path, err)
            continue
        if any(key not in saved for key in TRAINING_STATE_KEYS):
            continue
        broken = non_finite_tensors(saved["model"]) + _non_finite_optimizer_state(saved["optimizer"])
        if not broken:
            return path
        logger.warning("cannot rewind to %s: non-finite values in %s", path, ", ".join(broken[:8]))
    return None


def _non_finite_optimizer_state(optimizer_state: Mapping[str, Any]) -> List[str]:
    return [f"optimizer state of parameter {index}: {name}"
            for index, per_param in optimizer_state.get("state", {}).items()
            for name in non_finite_tensors(per_param)]


def _epoch_record_of(saved: Mapping[str, Any]) -> Dict[str, Any]:
    return {"epoch_outputs": saved["epoch_outputs"]} if saved.get("epoch_outputs") else {}
