"""The checkpoint budget of a long run: ``TRAIN.KEEP_CHECKPOINTS`` keeps the newest periodic copies
this run wrote and touches nothing else; weights-only milestones that a finetune or an inference
tool starts from; the preflight line before the first step, and the refusal of a filesystem that
cannot hold the next save; the recipes' budgets."""
import logging
import re
import runpy

import pytest
import torch

from common.checkpoint import safe_load
from common.config import load_config
from common.engine import checkpoint_budget
from common.engine.builders import build_model
from common.engine.checkpoint_budget import DiskSpaceError, checkpoint_plan
from common.engine.checkpointing import load_initial_weights
from common.engine.inference import load_run
from common.engine.jobs import run_job
from tests.engine.toy_data import toy_cfg
from tests.robustness.helpers import REPO, epoch_losses, fill_filesystem, same_weights, small_filesystem

KEEP_TWO = ("TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.KEEP_CHECKPOINTS", "2")
PREFLIGHT = re.compile(r"checkpoints: ~(\S+) GB over the run \((\d+) files\), free on OUTPUT_DIR: (\S+) GB")


def _names(folder, pattern="*.pth"):
    return sorted(p.name for p in folder.glob(pattern))


def test_keep_checkpoints_leaves_the_newest_two_copies_and_a_users_own_file(tmp_path):
    (tmp_path / "checkpoint-notes.pth").write_bytes(b"the user's own notes")
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "6", *KEEP_TWO))
    assert _names(tmp_path) == ["checkpoint-5.pth", "checkpoint-6.pth", "checkpoint-last.pth", "checkpoint-notes.pth"]
    assert (tmp_path / "checkpoint-notes.pth").read_bytes() == b"the user's own notes"
    assert [safe_load(tmp_path / f"checkpoint-{e}.pth")["epoch"] for e in (5, 6)] == [5, 6]
    assert sorted(epoch_losses(tmp_path)) == [1, 2, 3, 4, 5, 6]


def test_a_periodic_copy_the_user_replaced_is_not_deleted(tmp_path, caplog):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "3", *KEEP_TWO))
    assert _names(tmp_path) == ["checkpoint-2.pth", "checkpoint-3.pth", "checkpoint-last.pth"]
    mine = {"model": {"w": torch.ones(3)}, "note": "my best model"}
    torch.save(mine, tmp_path / "checkpoint-2.pth")  # the user's file now, under the engine's name
    with caplog.at_level(logging.WARNING):
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "6", *KEEP_TWO))
    assert _names(tmp_path) == ["checkpoint-2.pth", "checkpoint-5.pth", "checkpoint-6.pth", "checkpoint-last.pth"]
    assert safe_load(tmp_path / "checkpoint-2.pth")["note"] == "my best model"
    assert f"{tmp_path / 'checkpoint-2.pth'} changed since this run wrote it: not deleted" in caplog.text


def test_a_corrupt_last_checkpoint_resumes_from_a_kept_copy(tmp_path, caplog):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "4", *KEEP_TWO))
    last = tmp_path / "checkpoint-last.pth"
    last.write_bytes(last.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "5", *KEEP_TWO))
    assert f"resuming from {tmp_path / 'checkpoint-4.pth'}, the newest checkpoint that loads" in caplog.text
    assert _names(tmp_path) == ["checkpoint-4.pth", "checkpoint-5.pth", "checkpoint-last.pth"]
    assert safe_load(last)["epoch"] == 5


def test_weights_milestones_are_a_third_of_a_full_copy_and_runs_start_from_them(tmp_path):
    pre = tmp_path / "pretrain"
    run_job("pretrain", toy_cfg("video_pretrain", pre, "SOLVER.MAX_EPOCH", "4", "TRAIN.CHECKPOINT_PERIOD", "2",
                                "TRAIN.KEEP_CHECKPOINTS", "1", "TRAIN.WEIGHTS_PERIOD", "2"))
    assert _names(pre) == ["checkpoint-4.pth", "checkpoint-last.pth", "weights-2.pth", "weights-4.pth"]
    full, milestone = safe_load(pre / "checkpoint-4.pth"), safe_load(pre / "weights-4.pth")
    assert same_weights(milestone["model"], full["model"]) and milestone["epoch"] == 4
    assert "optimizer" not in milestone and milestone["cfg"] == full["cfg"]
    assert (pre / "weights-4.pth").stat().st_size < 0.4 * (pre / "checkpoint-4.pth").stat().st_size
    classifier = build_model(toy_cfg("video_finetune", tmp_path), pretraining=False, crop_size=32)
    load_initial_weights(classifier, str(pre / "weights-2.pth"), into_classifier=True)
    assert torch.equal(classifier.state_dict()["pos_embed"], safe_load(pre / "weights-2.pth")["model"]["pos_embed"])
    assert load_run(checkpoint=pre / "weights-2.pth", device="cpu").pretraining  # extract_features / predict
    record = run_job("finetune", toy_cfg("video_finetune", tmp_path / "finetune", "SOLVER.MAX_EPOCH", "1",
                                         "TRAIN.CHECKPOINT_FILE_PATH", str(pre / "weights-2.pth")))
    assert record["epoch"] == 1


def test_the_preflight_line_counts_what_the_run_will_hold(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "6", "TRAIN.CHECKPOINT_PERIOD", "2",
                                "TRAIN.KEEP_CHECKPOINTS", "2", "TRAIN.WEIGHTS_PERIOD", "3", "LOG.PERIOD", "1"))
    log = (tmp_path / "log.txt").read_text()
    found = PREFLIGHT.search(log)
    assert found and log.index(found.group(0)) < log.index(" it 1/")  # before the first step
    kept = ["checkpoint-4.pth", "checkpoint-6.pth", "checkpoint-last.pth", "weights-3.pth", "weights-6.pth"]
    assert _names(tmp_path) == kept and int(found.group(2)) == len(kept)
    held = sum((tmp_path / name).stat().st_size for name in kept)
    assert abs(float(found.group(1)) * 1e9 - held) < 0.02 * held
    assert float(found.group(3)) > 0


def test_a_filesystem_without_room_for_the_next_save_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(checkpoint_budget, "free_bytes", lambda path: 900_000)  # a toy checkpoint is ~1 MB
    with pytest.raises(DiskSpaceError) as error:
        run_job("pretrain", toy_cfg("video_pretrain", run))
    message = str(error.value)
    assert "\n" not in message and f"OUTPUT_DIR {run} has 0.0009 GB free" in message
    assert re.search(r"the next checkpoint save needs ~0\.001\d* GB", message)
    assert not list(run.glob("*.pth")) and not (run / "config.yaml").exists() and not (run / "log.jsonl").exists()


def test_a_real_small_filesystem_that_cannot_hold_the_next_save_is_refused(tmp_path):
    with small_filesystem(tmp_path / "fs", 4_000_000) as fs:
        fill_filesystem(fs, leave_bytes=500_000)
        run = fs / "run"
        with pytest.raises(DiskSpaceError, match=f"OUTPUT_DIR {run} has 0.000"):
            run_job("pretrain", toy_cfg("video_pretrain", run))
        assert not list(run.glob("*.pth")) and not (run / "config.yaml").exists()


RECIPES = ["video/k400_pretrain_msd", "video/ssv2_pretrain_msd", "image/convmae_base_pretrain"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_paper_recipes_keep_a_finetunable_copy_every_20_epochs_within_their_budget(recipe):
    """Sizes from the real B models (built on the meta device: no memory, no time)."""
    cfg = load_config(str(REPO / "configs" / f"{recipe}.yaml"))
    with torch.device("meta"):
        model = build_model(cfg, pretraining=True, crop_size=cfg.DATA.TRAIN_CROP_SIZE)
    plan = checkpoint_plan(cfg, model)
    weights = [e for e in range(1, cfg.SOLVER.MAX_EPOCH + 1) if plan.keeps_weights(e)]
    assert weights == list(range(20, cfg.SOLVER.MAX_EPOCH + 1, 20))  # VideoMAE's / MAE's cadence
    assert cfg.TRAIN.CHECKPOINT_PERIOD >= 20 and cfg.TRAIN.KEEP_CHECKPOINTS >= 1
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(plan.weights_bytes - 4 * params) < 0.01 * plan.weights_bytes  # fp32 weights, nothing else
    assert abs(plan.full_bytes - 4 * (params + 2 * trainable)) < 0.01 * plan.full_bytes  # + AdamW's moments
    held = (1 + cfg.TRAIN.KEEP_CHECKPOINTS) * plan.full_bytes + len(weights) * plan.weights_bytes
    assert plan.bytes_at_end() == held
    if recipe.startswith("video/k400"):
        assert held <= 25e9  # issue 22: at most 25 GB (about 950 GB with a full copy every epoch)


BEFORE = ["TRAIN.CHECKPOINT_PERIOD", "1", "TRAIN.KEEP_CHECKPOINTS", "0", "TRAIN.WEIGHTS_PERIOD", "0"]
DOCUMENTED = [("video/k400_pretrain_msd", "pretrain"), ("video/ssv2_pretrain_msd", "pretrain"),
              ("image/convmae_base_pretrain", "pretrain"), ("video/k400_finetune_msd", "finetune"),
              ("video/ssv2_finetune_msd", "finetune"), ("image/convvit_base_finetune", "finetune")]


def test_the_disk_budget_table_of_the_docs_is_what_the_tool_prints(capsys):
    tool = runpy.run_path(str(REPO / "tools" / "checkpoint_budget.py"))
    docs = (REPO / "docs" / "training.md").read_text()
    for recipe, job in DOCUMENTED:
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{recipe}.yaml`"))
        for overrides in ([], BEFORE):
            report = tool["main"](["--job", job, "--cfg", str(REPO / "configs" / f"{recipe}.yaml"), *overrides])
            sizes, preflight = report.splitlines()
            assert f"`{preflight.split(', free on OUTPUT_DIR')[0]}`" in row, (recipe, overrides)
            full, weights = re.findall(r"~(\S+) GB", sizes)
            assert row.split(" | ")[1:3] == [f"{full} GB", f"{weights} GB"]
    assert "checkpoints: ~" in capsys.readouterr().out


def test_after_overwrite_the_new_run_keeps_its_own_newest_copies(tmp_path):
    """OVERWRITE deletes the old copies and their record: the old run's epochs 3-4 must not hold
    the two places of KEEP_CHECKPOINTS and push out the new run's copies."""
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "4", *KEEP_TWO))
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2", "OVERWRITE", "True", *KEEP_TWO))
    assert _names(tmp_path) == ["checkpoint-1.pth", "checkpoint-2.pth", "checkpoint-last.pth"]
    assert safe_load(tmp_path / "checkpoint-last.pth")["epoch"] == 2


def test_copies_deleted_by_hand_do_not_hold_places_among_the_kept(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2", *KEEP_TWO))
    (tmp_path / "checkpoint-2.pth").unlink()
    checkpoint_budget.record_copy(tmp_path, "checkpoint-1.pth", "s")  # listed, present
    assert checkpoint_budget.remove_old_copies(str(tmp_path), 1) == []  # the missing 2 is forgotten, 1 stays
    assert _names(tmp_path) == ["checkpoint-1.pth", "checkpoint-last.pth"]


def test_a_rewind_forgets_the_copies_of_later_epochs(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_PERIOD", "1"))
    checkpoint_budget.forget_copies_after(str(tmp_path), 1)  # a rewind to the end of epoch 1
    assert sorted(checkpoint_budget._read_record(str(tmp_path))) == ["checkpoint-1.pth"]
    assert _names(tmp_path) == ["checkpoint-1.pth", "checkpoint-2.pth", "checkpoint-3.pth", "checkpoint-last.pth"]


def test_overwrite_counts_the_space_of_the_checkpoints_it_deletes(tmp_path, monkeypatch):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_PERIOD", "1"))
    held = sum(p.stat().st_size for p in tmp_path.glob("checkpoint-*.pth"))
    # Free space alone holds no next save (~2 MB: last + a copy); with the old run's ~3 MB it does.
    monkeypatch.setattr(checkpoint_budget, "free_bytes", lambda path: held // 3)
    with pytest.raises(DiskSpaceError):
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_PERIOD", "1",
                                    "TRAIN.AUTO_RESUME", "True"))
    record = run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "1", "OVERWRITE", "True"))
    assert record["epoch"] == 1


def test_the_budget_tool_says_a_wrong_config_in_one_line(capsys):
    tool = runpy.run_path(str(REPO / "tools" / "checkpoint_budget.py"), run_name="budget_tool")["main"]
    for args, expected in ((["TRAIN.KEEP_CHECKPOINTS", "-1"], "TRAIN.KEEP_CHECKPOINTS = -1: expected >= 0"),
                           (["TRAIN.KEEP_CHECKPOINTZ", "1"], "unknown config key 'TRAIN.KEEP_CHECKPOINTZ'")):
        with pytest.raises(SystemExit) as stopped:
            tool(["--job", "pretrain", "--cfg", str(REPO / "configs/video/k400_pretrain_msd.yaml"), *args])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.count("\n") == 1 and expected in err, err
