"""Recovery from divergence: when the non-finite limit trips, the run rewinds to the newest
checkpoint with finite weights, redraws the data order of the rest of the epoch (and, on a second
rewind in the same place, turns autocast off for the decoder and loss), records the rewind, and
goes on; the rewind state is in the checkpoint, so a requeue does not walk into the same
divergence; after ``TRAIN.MAX_REWINDS`` the run stops with one line. A run that stepped nothing
is a failure, and non-finite weights are never saved."""
import itertools
import math

import pytest
import torch

import common.engine.jobs as jobs
from common.checkpoint import safe_load
from common.engine import trainer
from common.engine.builders import build_model
from common.engine.sampling import TrainSampler
from common.engine.trainer import DivergenceError
from common.errors import RunStopped, UserError
from tests.engine.toy_data import real_cfg, toy_cfg
from tests.robustness.helpers import (epoch_losses, output_lines, pretrain_args, rewind_records, run_tool,
                                      same_weights)

STEPS = 2  # toy dataset: 16 training samples, TRAIN.BATCH_SIZE 8
TRIP_AFTER_TWO = ("TRAIN.MAX_NONFINITE_STEPS", "1")


class Killed(BaseException):
    """Stands for a SIGKILL: the run stops where it is, nothing after it is written."""


def _poison(monkeypatch, poisoned):
    """The run's loss is NaN where ``poisoned(call, batch)`` holds (``call`` counts the loss calls of
    the run from 0, one per step here); ``poisoned`` may also raise."""
    real = jobs.build_loss_fn

    def build(cfg, spec, device):
        loss_fn, calls = real(cfg, spec, device), itertools.count()

        def loss(model, batch):
            value = loss_fn(model, batch)
            return value * math.nan if poisoned(next(calls), batch) else value
        return loss
    monkeypatch.setattr(jobs, "build_loss_fn", build)


def _finite(weights) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())


def test_non_finite_steps_on_the_first_pass_rewind_and_the_run_finishes_with_finite_weights(tmp_path, monkeypatch):
    _poison(monkeypatch, lambda call, batch: call in (STEPS, STEPS + 1))  # epoch 2, first pass only
    record = jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "3", *TRIP_AFTER_TWO))
    assert record["epoch"] == 3 and sorted(epoch_losses(tmp_path)) == [1, 2, 3]
    last = safe_load(tmp_path / "checkpoint-last.pth")
    assert _finite(last["model"]) and last["iteration"] == 3 * STEPS
    expected = {"event": "rewind", "rewind": 1, "iteration": 2 * STEPS,
                "reason": "2 steps with a non-finite loss or gradient (TRAIN.MAX_NONFINITE_STEPS = 1)",
                "checkpoint": str(tmp_path / "checkpoint-last.pth"), "to_iteration": STEPS,
                "change": "data order of the rest of epoch 2 redrawn"}
    assert rewind_records(tmp_path) == [expected]
    assert last["rewinds"]["history"] == [{k: v for k, v in expected.items() if k != "event"}]
    log = (tmp_path / "log.txt").read_text()
    assert (f"rewind 1/3 at iteration {2 * STEPS}: 2 steps with a non-finite loss or gradient "
            f"(TRAIN.MAX_NONFINITE_STEPS = 1); back to {tmp_path / 'checkpoint-last.pth'} (iteration {STEPS}); "
            "data order of the rest of epoch 2 redrawn") in log


def _original_batches(epoch: int, seed: int = 0):
    """The index sets of the toy run's batches in ``epoch`` (0-based) of the original order."""
    order = [index for index, _ in TrainSampler(16, rank=0, world_size=1, seed=seed).epoch_order(epoch)]
    return {frozenset(order[i:i + 8]) for i in range(0, 16, 8)}


def test_a_requeue_after_a_rewind_does_not_rewind_again(tmp_path, monkeypatch):
    """Epoch 2's original batches diverge (the data at that point of the run does it). The run
    rewinds and is killed at its next step, before any new checkpoint; the requeued run keeps the
    redrawn order, so it never meets those batches again."""
    bad = _original_batches(1)
    cfg = toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "3", "DETERMINISTIC", "True", *TRIP_AFTER_TWO)

    def diverging_data(call, batch) -> bool:
        return frozenset(batch["index"].tolist()) in bad

    def diverging_data_then_killed(call, batch) -> bool:
        if call == 2 * STEPS:  # the first step after the rewind
            raise Killed
        return diverging_data(call, batch)

    _poison(monkeypatch, diverging_data_then_killed)
    with pytest.raises(Killed):
        jobs.run_job("pretrain", cfg)
    assert len(rewind_records(tmp_path)) == 1
    _poison(monkeypatch, diverging_data)
    assert jobs.run_job("pretrain", cfg)["epoch"] == 3
    assert len(rewind_records(tmp_path)) == 1 and (tmp_path / "log.txt").read_text().count("rewind 1/3 at") == 1
    assert _finite(safe_load(tmp_path / "checkpoint-last.pth")["model"])


def test_a_second_rewind_to_the_same_checkpoint_turns_autocast_off_for_the_decoder_and_loss(tmp_path, monkeypatch):
    _poison(monkeypatch, lambda call, batch: STEPS <= call < 3 * STEPS)  # epoch 2 diverges on its first 2 passes
    args = ("TRAIN.PRECISION", "bf16", *TRIP_AFTER_TWO)
    jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "3", *args))
    first, second = rewind_records(tmp_path)
    assert first["change"] == "data order of the rest of epoch 2 redrawn"
    assert second["change"] == "data order of the rest of epoch 2 redrawn; bf16 autocast off for the decoder and loss"
    assert first["to_iteration"] == second["to_iteration"] == STEPS
    assert safe_load(tmp_path / "checkpoint-last.pth")["rewinds"]["precision"] == "decoder_fp32"

    monkeypatch.undo()
    dtypes = []
    real_prepare = jobs.prepare_model

    def watched(*a, **k):  # the resumed run: what the decoder computes in
        model = real_prepare(*a, **k)
        model.decoder_pred.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model
    monkeypatch.setattr(jobs, "prepare_model", watched)
    jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "4", *args))
    assert dtypes and set(dtypes) == {torch.float32}


def test_the_decoder_and_loss_leave_autocast_when_told(tmp_path):
    model = build_model(toy_cfg("video_pretrain", tmp_path), pretraining=True, crop_size=32)
    x = torch.randn(2, 3, 4, 32, 32)
    mask = model.random_masking(2, 0.75, device=x.device)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, _ = model(x, mask=mask)
        latent, ids_restore = model.forward_encoder(x, mask)
    assert pred.dtype == torch.bfloat16  # the decoder under autocast
    model.decoder_autocast = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, _ = model(x, mask=mask)
    expected_pred = model.forward_decoder(latent.float(), ids_restore)  # outside autocast: fp32
    assert pred.dtype == loss.dtype == torch.float32
    torch.testing.assert_close(pred, expected_pred)
    torch.testing.assert_close(loss, model.forward_loss(x, expected_pred, mask))


@pytest.mark.slow
@pytest.mark.parametrize("max_rewinds", [0, 2])
def test_a_run_that_diverges_every_time_stops_after_max_rewinds_with_one_line(tmp_path, video_data, max_rewinds):
    """One good epoch, then SOLVER.BASE_LR 1e6 from epoch 2 on: every pass diverges."""
    run = tmp_path / "run"
    jobs.run_job("pretrain", real_cfg("video_pretrain", run, video_data, "LOG.PERIOD", "1", "DETERMINISTIC", "True"))
    good = (run / "checkpoint-last.pth").read_bytes()
    out = tmp_path / "diverging.out"
    code = run_tool(pretrain_args(run, video_data, "SOLVER.BASE_LR", "1e6", "TRAIN.MAX_REWINDS", str(max_rewinds),
                                  *TRIP_AFTER_TWO), out)
    text = out.read_text()
    assert code == 1, text[-3000:]
    assert "Traceback" not in text
    last_line = output_lines(out)[-1]
    assert last_line.startswith("error: ") and f"(TRAIN.MAX_REWINDS = {max_rewinds})" in last_line
    assert f"the last checkpoint in {run} is untouched" in last_line
    assert len(rewind_records(run)) == max_rewinds
    last = safe_load(run / "checkpoint-last.pth")
    assert last["epoch"] == 1 and same_weights(last["model"], safe_load(run / "checkpoint-1.pth")["model"])
    if max_rewinds == 0:
        assert (run / "checkpoint-last.pth").read_bytes() == good


def test_a_run_whose_every_step_was_skipped_is_a_failure_and_saves_nothing(tmp_path, monkeypatch):
    _poison(monkeypatch, lambda call, batch: True)  # fewer steps than TRAIN.MAX_NONFINITE_STEPS (10)
    with pytest.raises(DivergenceError) as error:
        jobs.run_job("finetune", toy_cfg("video_finetune", tmp_path, "SOLVER.MAX_EPOCH", "1",
                                         "TRAIN.CHECKPOINT_FILE_PATH", ""))
    message = str(error.value)
    assert "\n" not in message and message.startswith("every step of epoch 1 was skipped (non-finite loss or gradient)")
    assert f"no checkpoint in {tmp_path} with finite weights to rewind to" in message
    assert not list(tmp_path.glob("*.pth")) and not (tmp_path / "log.jsonl").exists()


def test_a_finetune_from_non_finite_start_weights_does_not_finish(tmp_path):
    weights = build_model(toy_cfg("video_pretrain", tmp_path), pretraining=True, crop_size=32).state_dict()
    weights["patch_embed1.proj.weight"].fill_(math.nan)
    torch.save({"model": weights}, tmp_path / "start.pth")
    run = tmp_path / "run"
    with pytest.raises((UserError, RunStopped)):  # refused at loading, or stopped by the loop
        jobs.run_job("finetune", toy_cfg("video_finetune", run, "SOLVER.MAX_EPOCH", "1",
                                         "TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "start.pth")))
    assert not list(run.glob("*.pth"))


def test_weights_that_became_non_finite_are_never_saved(tmp_path, monkeypatch):
    real_step, steps = trainer._optimizer_step, []

    def step_then_break_the_weights(state, batches, conf):
        result = real_step(state, batches, conf)
        steps.append(1)
        if len(steps) == STEPS:  # the loss was finite, the weights are not any more
            with torch.no_grad():
                next(state.unwrapped.parameters()).fill_(math.inf)
        return result
    monkeypatch.setattr(trainer, "_optimizer_step", step_then_break_the_weights)
    with pytest.raises(DivergenceError) as error:
        jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "1"))
    assert str(error.value).startswith("the weights are not finite at the end of epoch 1")
    assert not list(tmp_path.glob("*.pth"))
