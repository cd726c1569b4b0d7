"""What a run resumes from and starts from: a corrupt ``checkpoint-last.pth`` falls back to the
newest checkpoint that loads; a mid-epoch resume logs the epoch's figures of an uninterrupted
run; starting weights in the common layouts load, and weights that do not fit stop the run."""
import logging

import pytest
import torch

from common.checkpoint import CheckpointError
from common.engine.builders import build_model
from common.engine.checkpointing import load_initial_weights
from common.engine.jobs import run_job
from tests.engine.toy_data import preempt_after_steps, toy_cfg
from tests.robustness.helpers import epoch_losses, load_all_checkpoints, same_weights

CORRUPTIONS = {"truncated": lambda data: data[: len(data) // 2], "empty": lambda data: b""}
MESSAGES = {"truncated": "is truncated or corrupt", "empty": "is empty (0 bytes)"}


@pytest.fixture
def two_epochs(tmp_path):
    """A finished 2-epoch toy pretraining run keeping every epoch's checkpoint."""
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "TRAIN.CHECKPOINT_PERIOD", "1"))
    return tmp_path


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_corrupt_last_checkpoint_falls_back_to_the_newest_that_loads(two_epochs, caplog, damage):
    last = two_epochs / "checkpoint-last.pth"
    last.write_bytes(CORRUPTIONS[damage](last.read_bytes()))
    with caplog.at_level(logging.WARNING):
        run_job("pretrain", toy_cfg("video_pretrain", two_epochs, "TRAIN.CHECKPOINT_PERIOD", "1", "SOLVER.MAX_EPOCH", "3"))
    assert f"cannot resume from {last}, skipping it: checkpoint {last} {MESSAGES[damage]}" in caplog.text
    assert f"resuming from {two_epochs / 'checkpoint-2.pth'}, the newest checkpoint that loads" in caplog.text
    saved = load_all_checkpoints(two_epochs)
    assert saved["checkpoint-last.pth"]["epoch"] == 3 and sorted(epoch_losses(two_epochs)) == [1, 2, 3]


def test_no_checkpoint_that_loads_names_every_file_tried(two_epochs):
    for damage, name in zip(("empty", "truncated", "truncated"), ("checkpoint-last.pth", "checkpoint-2.pth",
                                                                  "checkpoint-1.pth")):
        path = two_epochs / name
        path.write_bytes(CORRUPTIONS[damage](path.read_bytes()))
    with pytest.raises(CheckpointError) as error:
        run_job("pretrain", toy_cfg("video_pretrain", two_epochs, "SOLVER.MAX_EPOCH", "3"))
    lines = str(error.value).splitlines()
    assert lines[0] == f"no checkpoint in {two_epochs} can be resumed from; tried:"
    assert [line.split()[1] for line in lines[1:4]] == [str(two_epochs / n) for n in
                                                        ("checkpoint-last.pth", "checkpoint-2.pth", "checkpoint-1.pth")]
    assert "is empty (0 bytes)" in lines[1] and "is truncated or corrupt" in lines[2]


def test_mid_epoch_resume_logs_the_epoch_figures_of_the_uninterrupted_run(tmp_path, monkeypatch):
    """Toy run: 2 steps per epoch; stopped by a preemption request after step 3 (epoch 2, step 1)."""
    args = ("DETERMINISTIC", "True", "LOG.PERIOD", "1")
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "reference", *args))
    run = tmp_path / "run"
    preempt_after_steps(monkeypatch, 3)
    with pytest.raises(SystemExit) as stopped:
        run_job("pretrain", toy_cfg("video_pretrain", run, *args))
    assert stopped.value.code == 0
    saved = load_all_checkpoints(run)["checkpoint-last.pth"]
    assert (saved["epoch"], saved["epoch_iteration"]) == (1, 1) and saved["epoch_sums"][0]["loss_count"] == 1
    monkeypatch.undo()
    run_job("pretrain", toy_cfg("video_pretrain", run, *args))
    assert epoch_losses(run) == epoch_losses(tmp_path / "reference") and sorted(epoch_losses(run)) == [1, 2]


def _pretrained(tmp_path):
    cfg = toy_cfg("video_pretrain", tmp_path)
    torch.manual_seed(3)
    return build_model(cfg, pretraining=True, crop_size=32).state_dict()


def _classifier(tmp_path):
    torch.manual_seed(4)
    return build_model(toy_cfg("video_finetune", tmp_path), pretraining=False, crop_size=32)


@pytest.mark.parametrize("layout", ["state_dict", "module-prefix", "bare"])
def test_starting_weights_in_the_common_layouts_load_in_full(tmp_path, layout):
    weights = _pretrained(tmp_path)
    stored = {"state_dict": {"state_dict": weights, "epoch": 5},
              "module-prefix": {"model": {f"module.{k}": v for k, v in weights.items()}},
              "bare": weights}[layout]
    torch.save(stored, tmp_path / "start.pth")
    model = _classifier(tmp_path)
    load_initial_weights(model, str(tmp_path / "start.pth"), into_classifier=True)
    loaded = model.state_dict()
    encoder = {k: v for k, v in weights.items() if k in loaded and not k.startswith("decoder")}
    assert len(encoder) > 20 and same_weights({k: loaded[k] for k in encoder}, encoder)


@pytest.mark.parametrize("stored, matched", [
    ({}, "0 of"),
    ({"model": {}}, "0 of"),
    ({"model": {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(3, 8)}}, "0 of"),
], ids=["empty-dict", "empty-model", "another-architecture"])
def test_starting_weights_that_do_not_fit_stop_the_run(tmp_path, stored, matched):
    torch.save(stored, tmp_path / "start.pth")
    cfg = toy_cfg("video_finetune", tmp_path / "run", "TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "start.pth"))
    with pytest.raises(CheckpointError) as error:
        run_job("finetune", cfg)
    message = str(error.value)
    assert f"TRAIN.CHECKPOINT_FILE_PATH {tmp_path / 'start.pth'} does not fit the model: {matched}" in message
    assert "not matched: pos_embed, patch_embed1" in message and not (tmp_path / "run" / "checkpoint-last.pth").exists()


def test_partly_fitting_weights_list_what_matched(tmp_path):
    weights = _pretrained(tmp_path)
    kept = {k: v for k, v in weights.items() if not k.startswith("blocks3")}
    torch.save({"model": kept}, tmp_path / "start.pth")
    with pytest.raises(CheckpointError) as error:
        load_initial_weights(_classifier(tmp_path), str(tmp_path / "start.pth"), into_classifier=True)
    encoder = [k for k in _classifier(tmp_path).state_dict() if not k.startswith(("head.", "fc_norm."))]
    missing = [k for k in encoder if k.startswith("blocks3")]
    assert f"{len(encoder) - len(missing)} of {len(encoder)} encoder weights matched (pos_embed, patch_embed1" in str(error.value)
    assert f"not matched: {missing[0]}" in str(error.value)


def test_non_finite_starting_weights_stop_the_run_naming_the_tensors(tmp_path):
    """A diverged pretraining's NaN weights used to finetune into a NaN checkpoint with exit 0."""
    weights = _pretrained(tmp_path)
    weights["pos_embed"].view(-1)[3] = float("nan")
    weights["blocks3.0.attn.qkv.weight"].view(-1)[0] = float("-inf")
    torch.save({"model": weights}, tmp_path / "start.pth")
    cfg = toy_cfg("video_finetune", tmp_path / "run", "TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "start.pth"))
    with pytest.raises(CheckpointError) as error:
        run_job("finetune", cfg)
    message = str(error.value)
    assert f"{tmp_path / 'start.pth'} has non-finite values (NaN or inf) in 2 tensors: " in message
    assert "pos_embed" in message and "blocks3.0.attn.qkv.weight" in message and "\n" not in message
    assert not (tmp_path / "run" / "checkpoint-last.pth").exists()
