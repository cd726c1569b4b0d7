"""The jobs end to end on the in-memory toy dataset: pretrain -> finetune / linprobe -> test,
resume (at an epoch boundary and mid-epoch after a preemption signal), divergence handling."""
import csv
import json
import os
import signal

import pytest
import torch

from common.checkpoint import atomic_save, safe_load
from common.engine import trainer
from common.engine.builders import build_model, has_probe_head, model_kwargs
from common.engine.checkpointing import find_resume_checkpoint
from common.engine.jobs import run_job
from common.engine.trainer import DivergenceError
from tests.engine.toy_data import toy_cfg


def _losses(output_dir):
    return [json.loads(line)["train_loss"] for line in (output_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("modality", ["video", "image"])
def test_pretrain_finetune_linprobe_test(tmp_path, modality):
    pre = tmp_path / "pre"
    record = run_job("pretrain", toy_cfg(f"{modality}_pretrain", pre, "TRAIN.CHECKPOINT_PERIOD", "1"))
    assert record["epoch"] == 2 and torch.isfinite(torch.tensor(record["train_loss"]))
    assert {"checkpoint-last.pth", "checkpoint-1.pth", "checkpoint-2.pth", "config.yaml", "log.jsonl", "log.txt"} \
        <= set(os.listdir(pre))
    state = safe_load(pre / "checkpoint-last.pth")
    assert {"model", "optimizer", "scaler", "epoch", "iteration", "cfg", "rng"} <= set(state)
    assert (state["epoch"], state["iteration"]) == (2, 4)  # 16 samples / batch 8 = 2 steps per epoch
    start = ["TRAIN.CHECKPOINT_FILE_PATH", str(pre / "checkpoint-last.pth")]
    ft = run_job("finetune", toy_cfg(f"{modality}_finetune", tmp_path / "ft", *start))
    assert ft["val_num_samples"] == 6 and 0 <= ft["val_top1"] <= 100
    lp = run_job("linprobe", toy_cfg(f"{modality}_linprobe", tmp_path / "lp", *start))
    assert lp["val_num_samples"] == 6
    probe = safe_load(tmp_path / "lp" / "checkpoint-last.pth")["model"]
    assert has_probe_head(probe)
    assert torch.equal(probe["blocks3.0.attn.qkv.weight"], state["model"]["blocks3.0.attn.qkv.weight"])  # frozen
    for run in ("ft", "lp"):
        summary = run_job("test", toy_cfg(f"{modality}_finetune", tmp_path / run))
        assert summary["num_videos"] == 7 and summary["num_failed"] == 1
        rows = list(csv.DictReader((tmp_path / run / "predictions.csv").open()))
        assert sorted(int(r["path"].split("_")[1].split(".")[0]) for r in rows) == list(range(7))


def test_overfit_loss_decreases(tmp_path):
    cfg = toy_cfg("image_finetune", tmp_path, "MIXUP.ENABLE", "False", "AUG.LABEL_SMOOTHING", "0.0",
                  "SOLVER.MAX_EPOCH", "10", "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.BASE_LR", "0.3",
                  "SOLVER.LAYER_DECAY", "1.0", "SOLVER.WEIGHT_DECAY", "0.0",
                  "MODEL.DROP_PATH_RATE", "0.0", "TRAIN.CHECKPOINT_FILE_PATH", "", "TRAIN.CHECKPOINT_PERIOD", "100")
    run_job("finetune", cfg)
    losses = _losses(tmp_path)
    assert all(map(lambda v: v == v and abs(v) < 1e6, losses))
    assert losses[-1] < 0.7 * losses[0]


def test_resume_at_epoch_boundary_matches_uninterrupted_run(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "full", "SOLVER.MAX_EPOCH", "3"))
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "split", "SOLVER.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_PERIOD", "1"))
    # Cut the split run back to its epoch-1 checkpoint, then resume it.
    os.replace(tmp_path / "split" / "checkpoint-1.pth", tmp_path / "split" / "checkpoint-last.pth")
    (tmp_path / "split" / "log.jsonl").unlink()
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "split", "SOLVER.MAX_EPOCH", "3"))
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")  # epoch 1's record rebuilt from its checkpoint
    full, split = (safe_load(tmp_path / d / "checkpoint-last.pth") for d in ("full", "split"))
    assert split["iteration"] == full["iteration"] == 6
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key
    assert torch.equal(full["optimizer"]["state"][0]["exp_avg"], split["optimizer"]["state"][0]["exp_avg"])


def test_preemption_mid_epoch_checkpoints_and_resumes_exactly(tmp_path, monkeypatch):
    full = tmp_path / "full"
    run_job("pretrain", toy_cfg("video_pretrain", full, "TRAIN.BATCH_SIZE", "4"))
    real_step = trainer._optimizer_step
    calls = {"n": 0}

    def step_then_signal(state, batches, conf):
        out = real_step(state, batches, conf)
        calls["n"] += 1
        if calls["n"] == 5:  # mid-way through epoch 2 (4 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(trainer, "_optimizer_step", step_then_signal)
    cut = tmp_path / "cut"
    with pytest.raises(SystemExit):
        run_job("pretrain", toy_cfg("video_pretrain", cut, "TRAIN.BATCH_SIZE", "4"))
    state = safe_load(find_resume_checkpoint(str(cut)))
    assert (state["epoch"], state["iteration"], state["epoch_iteration"]) == (1, 5, 1)
    monkeypatch.setattr(trainer, "_optimizer_step", real_step)
    run_job("pretrain", toy_cfg("video_pretrain", cut, "TRAIN.BATCH_SIZE", "4"))
    a, b = (safe_load(d / "checkpoint-last.pth")["model"] for d in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_steps_are_skipped_then_stop(tmp_path, monkeypatch):
    """Every other step is NaN: skipped and counted; more than TRAIN.MAX_NONFINITE_STEPS of them stop
    the run (without rewinds); a run whose every step was skipped: see tests/robustness/test_rewind.py."""
    import itertools

    import common.engine.jobs as jobs
    real = jobs.build_loss_fn

    def every_other_step_nan(cfg, spec, device):
        fn, calls = real(cfg, spec, device), itertools.count()
        return lambda model, batch: fn(model, batch) * (float("nan") if next(calls) % 2 else 1.0)

    monkeypatch.setattr(jobs, "build_loss_fn", every_other_step_nan)
    with pytest.raises(DivergenceError, match="MAX_NONFINITE_STEPS"):
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "TRAIN.MAX_NONFINITE_STEPS", "1",
                                    "TRAIN.MAX_REWINDS", "0"))
    last_good = safe_load(find_resume_checkpoint(str(tmp_path)))  # epoch 1: 1 skipped step, within limit
    assert last_good["epoch"] == 1 and all(torch.isfinite(v).all() for v in last_good["model"].values())
    record = run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "ok", "TRAIN.MAX_NONFINITE_STEPS", "10"))
    assert record["skipped_steps"] == 1 and record["epoch"] == 2


def _weight_changes(start, run_dir):
    """Per parameter: trained weights minus the weights the run started from."""
    trained = safe_load(run_dir / "checkpoint-last.pth")["model"]
    return {k: trained[k] - v for k, v in start.items() if v.is_floating_point()}


def test_gradient_accumulation_matches_big_batch(tmp_path):
    """2 steps of TRAIN.ACCUM_ITER 2 x batch 4 change the weights as 2 steps of batch 8 do
    (relative error of the weight changes, so a scaled or missing update cannot hide in a tolerance)."""
    start = tmp_path / "start.pth"
    plain = ("TRAIN.CHECKPOINT_FILE_PATH", str(start), "SOLVER.OPTIMIZING_METHOD", "sgd", "SOLVER.MAX_EPOCH", "1",
             "SOLVER.WARMUP_EPOCHS", "0.0", "MIXUP.ENABLE", "False", "MODEL.DROP_PATH_RATE", "0.0")
    cfg = toy_cfg("image_finetune", tmp_path / "big", *plain)
    weights = build_model(cfg, pretraining=False, crop_size=cfg.DATA.TRAIN_CROP_SIZE).state_dict()
    atomic_save({"model": weights}, start)
    run_job("finetune", cfg)
    run_job("finetune", toy_cfg("image_finetune", tmp_path / "acc", *plain, "TRAIN.BATCH_SIZE", "4",
                                "TRAIN.ACCUM_ITER", "2"))
    big, acc = (_weight_changes(weights, tmp_path / d) for d in ("big", "acc"))
    assert all(safe_load(tmp_path / d / "checkpoint-last.pth")["iteration"] == 2 for d in ("big", "acc"))
    trained = [k for k, change in big.items() if change.abs().max() > 0]
    assert "head.weight" in trained and "patch_embed1.proj.weight" in trained  # the whole network learned
    for key in trained:  # measured: at most 2e-6 (summation order)
        error = (acc[key] - big[key]).norm() / big[key].norm()
        assert error < 1e-4, (key, float(error))
    assert all(acc[k].abs().max() == 0 for k in big if k not in trained)


def test_model_kwargs_from_config(tmp_path):
    cfg = toy_cfg("video_pretrain", tmp_path)
    kwargs = model_kwargs(cfg, pretraining=True, crop_size=64)
    assert kwargs["num_frames"] == 4 and kwargs["embed_dim"] == [16, 24, 32] and kwargs["mask_ratio"] == 0.75
    assert "num_classes" not in kwargs and kwargs["sparse_conv"] is True
    dense = toy_cfg("video_pretrain", tmp_path)
    dense.defrost()
    dense.MODEL.SPARSE_CONV = False
    assert build_model(dense, pretraining=True, crop_size=64).sparse_conv is False
    image = model_kwargs(toy_cfg("image_finetune", tmp_path), pretraining=False, crop_size=64)
    assert "num_frames" not in image and image["num_classes"] == 4
    assert build_model(cfg, pretraining=True, crop_size=64).input_size == (4, 64, 64)
