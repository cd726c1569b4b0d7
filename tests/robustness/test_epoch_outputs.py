"""An epoch's outputs (its periodic checkpoint copy, its ``log.jsonl`` record) survive a kill
between any two of the epoch's writes, also on the last epoch; a full disk while saving, made
real (a file-size limit: EFBIG as under ``ulimit -f``; a small tmpfs: ENOSPC), is a
``CheckpointSaveError`` in one line with the previous checkpoint kept."""
import json
import os
import re
import resource
import subprocess
import sys

import pytest

from common.checkpoint import safe_load
from common.engine import trainer
from common.engine.checkpointing import CheckpointSaveError
from common.engine.jobs import run_job
from common.files import read_json_lines
from tests.engine.toy_data import DEMO, register_toy_dataset, toy_cfg, toy_overrides
from tests.robustness.helpers import (REPO, WAIT_S, epoch_losses, fill_filesystem, output_lines, same_weights,
                                      small_filesystem, temp_files)

EVERY_EPOCH = ("TRAIN.CHECKPOINT_PERIOD", "1", "DETERMINISTIC", "True")
CHECKPOINT_FILE = re.compile(r"/checkpoint-(\d+|last)\.pth$")


class Killed(BaseException):
    """Stands for a SIGKILL: the run stops where it is, nothing after it is written."""


def _killed_after_checkpoint_write(monkeypatch, count: int) -> None:
    """The run dies right after the ``count``-th checkpoint file is renamed into place."""
    real_replace, written = os.replace, []

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if CHECKPOINT_FILE.search(str(dst)):
            written.append(dst)
            if len(written) == count:
                raise Killed
    monkeypatch.setattr(os, "replace", replace)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """{max_epoch: OUTPUT_DIR} of uninterrupted runs."""
    register_toy_dataset()
    runs = {}
    for max_epoch in (1, 2):
        runs[max_epoch] = tmp_path_factory.mktemp(f"reference{max_epoch}")
        run_job("pretrain", toy_cfg("video_pretrain", runs[max_epoch], "SOLVER.MAX_EPOCH", str(max_epoch), *EVERY_EPOCH))
    return runs


def test_a_record_cut_mid_write_is_rebuilt_on_a_line_of_its_own(tmp_path):
    """A kill or a full disk in the middle of the last record of log.jsonl: the rerun rebuilds the
    record from the checkpoint on a new line, and a run finished before reads its records."""
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2", *EVERY_EPOCH))
    log = tmp_path / "log.jsonl"
    complete = log.read_text()
    cut = complete[:-20]  # the epoch-2 record cut, no newline at its end
    log.write_text(cut)
    record = run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2", *EVERY_EPOCH))
    assert record["already_finished"] and record["epoch"] == 2
    lines = log.read_text().splitlines()
    assert lines[:2] == cut.splitlines()  # the cut line is kept as it was
    assert json.loads(lines[2]) == json.loads(complete.splitlines()[1])  # rebuilt whole, on its own line
    assert [r["epoch"] for r in read_json_lines(log)] == [1, 2]  # the cut line skipped, with a warning


@pytest.mark.parametrize("max_epoch, killed_after", [(1, 1), (1, 2), (2, 3), (2, 4)],
                         ids=["last-epoch-write-1", "last-epoch-write-2", "epoch-2-write-1", "epoch-2-write-2"])
def test_a_kill_between_the_epoch_writes_loses_neither_record_nor_copy(tmp_path, monkeypatch, uninterrupted,
                                                                       max_epoch, killed_after):
    cfg = toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", str(max_epoch), *EVERY_EPOCH)
    _killed_after_checkpoint_write(monkeypatch, killed_after)
    with pytest.raises(Killed):
        run_job("pretrain", cfg)
    monkeypatch.undo()
    run_job("pretrain", cfg)  # the rerun; on the last epoch it may find the run finished
    reference = uninterrupted[max_epoch]
    assert epoch_losses(tmp_path) == epoch_losses(reference) and sorted(epoch_losses(tmp_path)) == list(
        range(1, max_epoch + 1))
    names = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert names == sorted(p.name for p in reference.glob("*.pth"))
    for name in names:
        assert same_weights(safe_load(tmp_path / name)["model"], safe_load(reference / name)["model"]), name


RUNNER = ("import sys; from tests.engine.toy_data import register_toy_dataset; register_toy_dataset(); "
          "from common.engine.cli import main; main(sys.argv[1], sys.argv[2:])")


def _run_with_file_size_limit(args, limit: int, out) -> int:
    """``tools/pretrain.py``'s command line in a subprocess whose files may not grow beyond ``limit``
    bytes (RLIMIT_FSIZE, as ``ulimit -f`` sets it; Python ignores SIGXFSZ, so writes fail with EFBIG)."""
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(out, "wb") as f:
        return subprocess.run([sys.executable, "-c", RUNNER, "pretrain", *args], cwd=REPO, env=env, stdout=f,
                              stderr=subprocess.STDOUT, preexec_fn=limit_file_size, timeout=WAIT_S).returncode


@pytest.mark.slow
@pytest.mark.parametrize("cut", ["half", "tail"], ids=["inside-torch-save", "at-the-final-flush"])
def test_a_file_size_limit_while_saving_is_a_checkpoint_save_error(tmp_path, cut):
    """``half``: the limit falls in the middle of the tensors, which ``torch.save`` writes from C++ (it
    turned the error into ``RuntimeError: unexpected pos``); ``tail``: in the archive's last bytes,
    which reach the file when the buffered writer is flushed at the end of the save."""
    run = tmp_path / "run"
    run_job("pretrain", toy_cfg("video_pretrain", run, "SOLVER.MAX_EPOCH", "1"))
    path = run / "checkpoint-last.pth"
    previous = path.read_bytes()
    limit = len(previous) // 2 if cut == "half" else len(previous) - 100
    args = ["--cfg", str(DEMO / "video_pretrain.yaml"), *toy_overrides(run, "SOLVER.MAX_EPOCH", "3")]
    out = tmp_path / "limited.out"
    code = _run_with_file_size_limit(args, limit, out)
    text = out.read_text()
    assert code == 2 and "Traceback" not in text, text[-3000:]
    assert output_lines(out)[-1] == (f"error: could not save checkpoint {path}: File too large [errno 27]; {path} "
                                     "keeps the previous checkpoint; raise the file size limit (ulimit -f), then "
                                     "rerun to resume")
    assert path.read_bytes() == previous and temp_files(run) == []
    assert run_job("pretrain", toy_cfg("video_pretrain", run, "SOLVER.MAX_EPOCH", "3"))["epoch"] == 3


def test_a_real_full_disk_while_saving_is_a_checkpoint_save_error(tmp_path, monkeypatch):
    with small_filesystem(tmp_path / "fs", 8_000_000) as fs:
        run = fs / "run"
        run_job("pretrain", toy_cfg("video_pretrain", run, "SOLVER.MAX_EPOCH", "1"))
        path = run / "checkpoint-last.pth"
        previous = path.read_bytes()
        real_step, filler = trainer._optimizer_step, []

        def step_while_the_disk_fills(*args, **kwargs):  # another job fills the disk during epoch 2
            if not filler:
                filler.append(fill_filesystem(fs, leave_bytes=300_000))
            return real_step(*args, **kwargs)
        monkeypatch.setattr(trainer, "_optimizer_step", step_while_the_disk_fills)
        with pytest.raises(CheckpointSaveError) as error:
            run_job("pretrain", toy_cfg("video_pretrain", run, "SOLVER.MAX_EPOCH", "3"))
        assert str(error.value) == (f"could not save checkpoint {path}: No space left on device [errno 28]; {path} "
                                    "keeps the previous checkpoint; free space on its disk, then rerun to resume")
        assert path.read_bytes() == previous and temp_files(run) == []
        filler[0].unlink()
        monkeypatch.undo()
        assert run_job("pretrain", toy_cfg("video_pretrain", run, "SOLVER.MAX_EPOCH", "3"))["epoch"] == 3
