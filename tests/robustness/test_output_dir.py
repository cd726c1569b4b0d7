"""OUTPUT_DIR safety: a run never overwrites another run's checkpoints unless told to, one run at
a time, and a full disk or a permission error while saving leaves the previous checkpoint valid."""
import errno

import pytest
import torch

import common.checkpoint as checkpoint_module
from common.checkpoint import CheckpointError
from common.engine.checkpointing import CheckpointSaveError
from common.engine.jobs import run_job
from common.engine.output_dir import OutputDirError, claim_output_dir
from tests.engine.toy_data import toy_cfg
from tests.robustness.helpers import epoch_losses, load_all_checkpoints, temp_files

ONE_EPOCH = ("SOLVER.MAX_EPOCH", "1")


@pytest.fixture
def finished_run(tmp_path):
    """A 1-epoch toy pretraining run in ``tmp_path``; returns its checkpoint bytes."""
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH))
    return (tmp_path / "checkpoint-last.pth").read_bytes()


@pytest.mark.parametrize("override, expected", [
    (("MODEL.NUM_HEADS", "4"), "MODEL.NUM_HEADS: saved 2, now 4"),
    (("MAE.MASK_RATIO", "0.5"), "MAE.MASK_RATIO: saved 0.75, now 0.5"),
    (("TRAIN.AUTO_RESUME", "False"), "TRAIN.AUTO_RESUME is False: this run would overwrite them"),
])
def test_another_run_is_refused_and_nothing_is_touched(tmp_path, finished_run, override, expected):
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "log.txt"}
    with pytest.raises(OutputDirError) as error:
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, *override))
    assert expected in str(error.value) and str(tmp_path) in str(error.value) and "OVERWRITE True" in str(error.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "log.txt"} == before


def test_a_finetune_config_cannot_resume_a_pretraining_run(tmp_path, finished_run):
    with pytest.raises(OutputDirError, match="MODEL.NAME: saved 'videoconvmae_small_patch16', now 'video_convvit"):
        run_job("finetune", toy_cfg("video_finetune", tmp_path, "TRAIN.CHECKPOINT_FILE_PATH", ""))


def test_same_settings_resume_and_a_finished_run_reruns_as_a_no_op(tmp_path, finished_run):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, "DATA_LOADER.NUM_WORKERS", "0"))
    assert (tmp_path / "checkpoint-last.pth").read_bytes() == finished_run  # finished: nothing to do
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2"))  # longer schedule: resumes
    assert load_all_checkpoints(tmp_path)["checkpoint-last.pth"]["epoch"] == 2 and sorted(epoch_losses(tmp_path)) == [1, 2]
    assert "holds a run with the same settings: resuming it" in (tmp_path / "log.txt").read_text()


def test_overwrite_starts_over(tmp_path, finished_run):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, "MODEL.NUM_HEADS", "4", "OVERWRITE", "True"))
    state = load_all_checkpoints(tmp_path)["checkpoint-last.pth"]
    assert state["epoch"] == 1 and "NUM_HEADS: 4" in state["cfg"]
    assert list(epoch_losses(tmp_path)) == [1]  # the old run's metrics are gone
    assert "OVERWRITE True: deleted checkpoint-1.pth, checkpoint-last.pth" in (tmp_path / "log.txt").read_text()


def test_a_second_run_in_a_busy_output_dir_is_refused(tmp_path):
    cfg = toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH)
    with claim_output_dir(cfg, job="pretrain", is_main=True):  # stands for a run still going on
        with pytest.raises(OutputDirError, match=r"is in use by another run \(pid \d+ on "):
            run_job("pretrain", cfg)
    run_job("pretrain", cfg)  # the lock went with the first run
    assert load_all_checkpoints(tmp_path)["checkpoint-last.pth"]["epoch"] == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_failed_save_keeps_the_previous_checkpoint_and_says_so(tmp_path, finished_run, monkeypatch, code):
    real_save = checkpoint_module.torch.save

    def write_half_then_fail(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise OSError(code, "simulated")

    monkeypatch.setattr(checkpoint_module.torch, "save", write_half_then_fail)
    with pytest.raises(CheckpointSaveError) as error:
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2"))
    path = tmp_path / "checkpoint-last.pth"
    assert f"could not save checkpoint {path}: simulated [errno {code}]; {path} keeps the previous checkpoint" \
        in str(error.value)
    assert path.read_bytes() == finished_run and temp_files(tmp_path) == []
    monkeypatch.undo()
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2"))  # space freed: resumes
    assert load_all_checkpoints(tmp_path)["checkpoint-last.pth"]["epoch"] == 2


def test_overwrite_deletes_nothing_when_the_run_fails_before_its_first_write(tmp_path, tmp_path_factory, finished_run):
    """OVERWRITE True with start weights that do not fit the model: the run stops, and the previous
    run's checkpoints, metrics and config are all still there, byte for byte."""
    weights = tmp_path_factory.mktemp("weights") / "foreign.pth"
    torch.save({"model": {"unrelated.weight": torch.zeros(3)}}, weights)
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name not in ("log.txt", ".run.lock")}
    with pytest.raises(CheckpointError):
        run_job("finetune", toy_cfg("video_finetune", tmp_path, "TRAIN.CHECKPOINT_FILE_PATH", str(weights),
                                    "OVERWRITE", "True"))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name not in ("log.txt", ".run.lock")} == kept
    assert "checkpoint-last.pth" in kept and "log.jsonl" in kept and "config.yaml" in kept


def test_a_pretraining_run_of_before_the_class_count_default_changed_resumes(tmp_path):
    """MODEL.NUM_CLASSES went from 400 to 0 (= from the data): pretraining never reads it, so an older
    pretraining run's folder (config.yaml saying 400) resumes under another count (the toy data's 4)."""
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, "MODEL.NUM_CLASSES", "400"))
    record = run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2"))
    assert record["epoch"] == 2 and sorted(epoch_losses(tmp_path)) == [1, 2]


def test_overwrite_also_deletes_the_results_of_a_test_of_the_previous_run(tmp_path, finished_run):
    previous = {"predictions.csv": "path,label\n", "test_results.json": "{}", "test_config.yaml": "x: 1\n",
                ".periodic-checkpoints.json": "{}"}
    for name, text in previous.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "my_notes.json").write_text("{}")
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, "OVERWRITE", "True"))
    assert not any((tmp_path / name).exists() for name in list(previous)[:3])
    assert (tmp_path / ".periodic-checkpoints.json").read_text() != "{}"  # the new run's record
    assert (tmp_path / "my_notes.json").exists()
