"""The training loop shared by pretraining, finetuning and linear probing, images and videos.

One optimizer step = ``accum_iter`` micro-batches (DDP gradient sync on the last one only),
per-iteration lr from the schedule, optional gradient clipping, AMP with a scaler for fp16.
A step whose loss or gradient is not finite on any rank is skipped and counted (fp16 overflows
are the scaler's business until its scale falls below ``MIN_LOSS_SCALE``); after
``max_nonfinite_steps`` such steps, or when every step of an epoch was skipped, the loop raises
``NonFiniteTrip`` before any checkpoint of the diverged state is written (``common.engine.rewind``
then rewinds, or stops the run with ``DivergenceError``). Weights that are not finite are never saved.
After every step the ranks agree on whether a preemption signal arrived; if so the loop saves
``checkpoint-last.pth`` and hands over to the preemption handler.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common.checkpoint import non_finite_tensors
from common.engine.checkpointing import EpochSums, Position, save_training_state
from common.engine.distributed import DistInfo, all_reduce_sum, any_rank
from common.engine.precision import Precision
from common.engine.preemption import PreemptionHandler
from common.engine.progress import PROGRESS, EpochMeter, SmoothedStepTime
from common.engine.rewind import DivergenceError, NonFiniteTrip, RewindState
from common.errors import some_of
from common.optim import CosineSchedule, set_lr

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Dict[str, Any]], torch.Tensor]
# fp16: an overflow with the loss scale still >= this is the scaler's normal search for a scale
# (skipped, not counted); below it the gradients are non-finite at any scale: counted.
MIN_LOSS_SCALE = 1.0
# The public names, with the errors of common.engine.rewind that the loop raises.
__all__ = ["DivergenceError", "LossFn", "MIN_LOSS_SCALE", "NonFiniteTrip", "StepConfig", "StepResult", "TrainState",
           "check_finite_weights", "train_one_epoch"]


@dataclass
class TrainState:
    """What the loop updates: model (maybe DDP-wrapped), optimizer, scaler, step counters."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Optional[torch.amp.GradScaler]
    position: Position = field(default_factory=Position)
    nonfinite_steps: int = 0
    eta_rate: SmoothedStepTime = field(default_factory=SmoothedStepTime)  # the run's step time, for the ETA
    epoch_sums: Optional[EpochSums] = None  # of the epoch a resumed run continues (see EpochMeter.sums)
    rewinds: RewindState = field(default_factory=RewindState)  # saved with every checkpoint

    @property
    def unwrapped(self) -> nn.Module:
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model


@dataclass(frozen=True)
class StepConfig:
    """Fixed settings of the loop."""

    loss_fn: LossFn
    schedule: CosineSchedule
    precision: Precision
    dist: DistInfo
    accum_iter: int = 1
    clip_grad: float = 0.0
    max_nonfinite_steps: int = 10
    log_period: int = 10
    max_epoch: int = 1
    output_dir: str = "."
    cfg_yaml: str = ""


def train_one_epoch(
    state: TrainState,
    batches: Iterator[Dict[str, Any]],
    *,
    steps: int,
    conf: StepConfig,
    preemption: Optional[PreemptionHandler] = None,
) -> Dict[str, float]:
    """Run the epoch ``state.position.epoch`` from ``state.position.epoch_iteration`` to ``steps``.

    ``batches`` yields this rank's remaining micro-batches of the epoch. Returns the epoch's
    averages (loss averaged over ranks). ``NonFiniteTrip`` when the non-finite limit trips or when
    no step of the epoch stepped.
    """
    state.model.train()
    meter = EpochMeter(steps_total=steps, eta_rate=state.eta_rate)
    if state.epoch_sums is not None:  # resumed in mid-epoch: the record counts the steps before the stop
        meter.restore(state.epoch_sums)
        state.epoch_sums = None
    for step in range(state.position.epoch_iteration, steps):
        lr = conf.schedule(state.position.iteration)
        set_lr(state.optimizer, lr)
        result = _optimizer_step(state, batches, conf)
        meter.decode_failures += result.decode_failures
        skipped, preempted = any_rank([not result.stepped, _preempt_requested(preemption)], conf.dist.device)
        tripped = skipped and _count_nonfinite(state, meter, conf, result.loss)
        if not skipped:
            meter.update(loss=result.loss, lr=lr, data_time=result.data_time, compute_time=result.compute_time,
                         samples=result.samples * conf.dist.world_size)
        pos = state.position
        state.position = Position(pos.epoch, pos.iteration + 1, step + 1)
        if (step + 1) % conf.log_period == 0 or step + 1 == steps:
            logger.info(meter.progress_line(epoch=pos.epoch, max_epoch=conf.max_epoch, step=step + 1), extra=PROGRESS)
        if tripped:
            raise NonFiniteTrip(f"{state.nonfinite_steps} steps with a non-finite loss or gradient "
                                f"(TRAIN.MAX_NONFINITE_STEPS = {conf.max_nonfinite_steps})", state.position.iteration)
        if preempted:
            _checkpoint_and_stop(state, conf, preemption, meter)
    summary, stepped = _epoch_summary(meter, conf)
    if stepped == 0:
        raise NonFiniteTrip(f"every step of epoch {state.position.epoch + 1} was skipped (non-finite loss or "
                            "gradient): nothing was learnt", state.position.iteration)
    return summary


def check_finite_weights(state: TrainState, conf: StepConfig, when: str) -> None:
    """``NonFiniteTrip`` when any rank's weights hold a NaN or an infinity (``when``: for the reason)."""
    broken = non_finite_tensors(state.unwrapped.state_dict())
    if any_rank([bool(broken)], conf.dist.device)[0]:
        names = f" ({some_of(broken, 4)})" if broken else ""
        raise NonFiniteTrip(f"the weights are not finite {when}{names}", state.position.iteration)


@dataclass
class StepResult:
    """One optimizer step on this rank: mean loss, whether the optimizer stepped, figures."""

    loss: float = 0.0
    stepped: bool = False
    samples: int = 0
    data_time: float = 0.0
    compute_time: float = 0.0
    decode_failures: int = 0


def _optimizer_step(state: TrainState, batches: Iterator[Dict[str, Any]], conf: StepConfig) -> StepResult:
    """Accumulate ``accum_iter`` micro-batches (forward + backward each) and step once."""
    result = StepResult()
    loss_sum = 0.0
    for micro in range(conf.accum_iter):
        start = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        sync = micro == conf.accum_iter - 1 or not isinstance(state.model, DistributedDataParallel)
        with nullcontext() if sync else state.model.no_sync():
            with conf.precision.autocast():
                loss = conf.loss_fn(state.model, batch)
            _backward(loss / conf.accum_iter, state.scaler)
        loss_sum += loss.item()
        result.samples += _batch_size(batch)
        result.decode_failures += int(batch.get("decode_failures", torch.zeros(1)).sum())
        result.data_time += fetched - start
        result.compute_time += time.perf_counter() - fetched
    start = time.perf_counter()
    result.loss = loss_sum / conf.accum_iter
    result.stepped = _apply_gradients(state, conf, finite_loss=math.isfinite(result.loss))
    result.compute_time += time.perf_counter() - start
    return result


def _backward(loss: torch.Tensor, scaler: Optional[torch.amp.GradScaler]) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _apply_gradients(state: TrainState, conf: StepConfig, *, finite_loss: bool) -> bool:
    """Unscale, clip and step if loss and gradients are finite. Returns False (a non-finite step)
    for a non-finite loss or gradient, except an fp16 overflow: the scaler skips that step and
    halves its scale, which is normal while the loss scale is at least ``MIN_LOSS_SCALE``."""
    optimizer, scaler = state.optimizer, state.scaler
    scale = scaler.get_scale() if scaler is not None else 1.0
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    max_norm = conf.clip_grad if conf.clip_grad > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
    finite_grads = bool(torch.isfinite(grad_norm))
    if finite_loss and finite_grads and scaler is not None:
        scaler.step(optimizer)
    elif finite_loss and finite_grads:
        optimizer.step()
    if scaler is not None:
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    overflow = scaler is not None and finite_loss and not finite_grads and scale >= MIN_LOSS_SCALE
    return (finite_loss and finite_grads) or overflow


def _count_nonfinite(state: TrainState, meter: EpochMeter, conf: StepConfig, loss: float) -> bool:
    """Count a skipped step; True when that makes more than ``max_nonfinite_steps``."""
    state.nonfinite_steps += 1
    meter.skipped_steps += 1
    logger.warning("non-finite loss/gradient (loss %s) at iteration %d: step skipped (%d/%d)", loss,
                   state.position.iteration, state.nonfinite_steps, conf.max_nonfinite_steps)
    return state.nonfinite_steps > conf.max_nonfinite_steps


def _preempt_requested(preemption: Optional[PreemptionHandler]) -> bool:
    return preemption is not None and preemption.requested


def _checkpoint_and_stop(state: TrainState, conf: StepConfig, preemption: Optional[PreemptionHandler],
                         meter: EpochMeter) -> None:
    try:
        check_finite_weights(state, conf, f"at iteration {state.position.iteration}")
    except NonFiniteTrip as trip:
        logger.warning("preempted: %s, so no checkpoint is written; the rerun goes on from the last one", trip.reason)
    else:
        save_training_state(conf.output_dir, model=state.unwrapped, optimizer=state.optimizer,
                            scaler=state.scaler, position=state.position, cfg_yaml=conf.cfg_yaml,
                            dist=conf.dist, epoch_sums=meter.sums(),
                            extra={"rewinds": state.rewinds.to_checkpoint()})
        logger.warning("preempted: checkpoint saved at iteration %d, exiting", state.position.iteration)
    if preemption is not None:
        preemption.finish()
    raise SystemExit(0)


def _batch_size(batch: Dict[str, Any]) -> int:
    return len(batch["label"]) if "label" in batch else len(next(iter(batch.values())))


def _epoch_summary(meter: EpochMeter, conf: StepConfig) -> Tuple[Dict[str, float], int]:
    """The epoch's record (loss and bad files over all ranks) and how many of its steps stepped."""
    summary = meter.summary()
    totals = all_reduce_sum(torch.tensor([meter.loss.total, meter.loss.count, meter.decode_failures],
                                         device=conf.dist.device))
    summary["train_loss"] = float(totals[0] / max(float(totals[1]), 1.0))
    summary["decode_failures"] = int(totals[2])
    return summary, int(totals[1])
