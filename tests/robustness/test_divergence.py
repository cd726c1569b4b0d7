"""Divergence: non-finite losses and gradients are skipped and counted up to
TRAIN.MAX_NONFINITE_STEPS, then (with TRAIN.MAX_REWINDS 0) the run stops with the last good
checkpoint byte-identical;
fp16 uses a loss scaler whose overflow steps are not divergence, bf16 needs none."""
import math

import pytest
import torch
from torch import nn

import common.engine.jobs as jobs
from common.engine.checkpointing import Position
from common.engine.precision import Precision, resolve_precision
from common.engine.trainer import MIN_LOSS_SCALE, DivergenceError, StepConfig, TrainState, _apply_gradients
from tests.engine.toy_data import toy_cfg
from tests.robustness.helpers import epoch_losses


class NanGradient(torch.autograd.Function):
    """Identity forward (a finite loss), NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


def _poisoned_loss(monkeypatch, poison):
    real = jobs.build_loss_fn
    monkeypatch.setattr(jobs, "build_loss_fn", lambda cfg, spec, device: (
        lambda model, batch: poison(real(cfg, spec, device)(model, batch))))


@pytest.mark.parametrize("poison", [lambda loss: loss * math.nan, NanGradient.apply], ids=["nan_loss", "nan_grad"])
def test_divergence_stops_and_leaves_the_last_good_checkpoint_untouched(tmp_path, monkeypatch, poison):
    settings = ("TRAIN.MAX_NONFINITE_STEPS", "1", "LOG.PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1",
                "TRAIN.MAX_REWINDS", "0")  # no rewind: stop at the first trip (test_rewind.py rewinds)
    jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *settings, "SOLVER.MAX_EPOCH", "1"))
    good = (tmp_path / "checkpoint-last.pth").read_bytes()
    _poisoned_loss(monkeypatch, poison)
    with pytest.raises(DivergenceError) as error:
        jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *settings, "SOLVER.MAX_EPOCH", "3"))
    assert "2 steps with a non-finite loss or gradient (TRAIN.MAX_NONFINITE_STEPS = 1)" in str(error.value)
    assert str(tmp_path) in str(error.value)
    assert (tmp_path / "checkpoint-last.pth").read_bytes() == good
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*.pth")) == ["checkpoint-1.pth", "checkpoint-last.pth"]
    log = (tmp_path / "log.txt").read_text()
    assert "step skipped (1/1)" in log and "skipped steps 1" in log  # warning and progress line
    assert list(epoch_losses(tmp_path)) == [1]


def _scaled_state(init_scale: float) -> TrainState:
    model = nn.Linear(3, 1)
    return TrainState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                      scaler=torch.amp.GradScaler("cpu", init_scale=init_scale), position=Position())


def test_fp16_overflow_is_the_scalers_business_until_the_scale_collapses():
    state = _scaled_state(init_scale=2 * MIN_LOSS_SCALE)
    conf = StepConfig(loss_fn=None, schedule=None, precision=None, dist=None)
    before = state.model.weight.detach().clone()
    stepped = []
    for _ in range(3):
        state.scaler.scale(state.model(torch.ones(1, 3)).sum()).backward()
        state.model.weight.grad.fill_(math.inf)
        stepped.append(_apply_gradients(state, conf, finite_loss=True))
    assert stepped == [True, True, False]  # scale 2 and 1: overflow skipped silently; 0.5: counted
    assert torch.equal(state.model.weight, before)
    assert state.scaler.get_scale() == MIN_LOSS_SCALE / 4


def test_fp16_uses_a_scaler_bf16_and_fp32_do_not():
    assert Precision(dtype=torch.float16, device_type="cuda").needs_scaler
    assert resolve_precision("bf16", torch.device("cpu")).grad_scaler() is None
    assert resolve_precision("fp32", torch.device("cpu")).grad_scaler() is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
