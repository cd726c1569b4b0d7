"""The engine touches only its own files: OVERWRITE and the temp clean-up delete engine names only,
the checkpoint a run starts from is never offered for deletion, links planted in OUTPUT_DIR are
not followed, checkpoints get the run's file permissions, and a folder built by the engine (the
synthetic dataset) is there whole or not at all."""
import os
import signal
import stat
import subprocess
import sys

import pytest

from common.checkpoint import safe_load
from common.engine import cli
from common.engine.jobs import run_job
from common.engine.output_dir import OutputDirError
from common.files import atomic_write_text, build_folder_atomically, is_engine_temp, temp_path
from tests.engine.toy_data import toy_cfg
from tests.robustness.helpers import REPO, WAIT_S, wait_for

ONE_EPOCH = ("SOLVER.MAX_EPOCH", "1")
FOREIGN = {"checkpoint-best-mine.pth": "user's weights", "paper.tex.tmp.1": "user's draft",
           ".checkpoint-x.tmp": "user's", "tensorboard/notes.txt": "user's notes"}


def _write_files(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_overwrite_and_temp_cleanup_delete_only_the_engines_files(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, "LOG.TENSORBOARD", "True"))
    old_events = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    stale = temp_path(tmp_path / "checkpoint-last.pth")
    _write_files(tmp_path, {**FOREIGN, stale.name: "half a checkpoint"})
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH, "LOG.TENSORBOARD", "True", "MODEL.NUM_HEADS", "4",
                                "OVERWRITE", "True"))
    assert {name: (tmp_path / name).read_text() for name in FOREIGN} == FOREIGN
    assert not stale.exists() and old_events and not set(old_events) & set(os.listdir(tmp_path / "tensorboard"))
    assert "NUM_HEADS: 4" in safe_load(tmp_path / "checkpoint-last.pth")["cfg"]


@pytest.mark.parametrize("overwrite", ["False", "True"])
def test_a_run_never_offers_to_delete_the_checkpoint_it_starts_from(tmp_path, overwrite):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH))
    start = tmp_path / "checkpoint-last.pth"
    before = start.read_bytes()
    cfg = toy_cfg("video_finetune", tmp_path, "TRAIN.CHECKPOINT_FILE_PATH", str(start), "OVERWRITE", overwrite)
    with pytest.raises(OutputDirError) as error:
        run_job("finetune", cfg)
    assert "choose another OUTPUT_DIR" in str(error.value) and str(start) in str(error.value)
    assert "OVERWRITE True to delete them" not in str(error.value) and "(deletes them)" not in str(error.value)
    assert start.read_bytes() == before


@pytest.mark.parametrize("planted", [".run.lock", "log.txt"])
def test_a_link_planted_in_output_dir_is_not_written_through(tmp_path, planted):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "shared"
    out.mkdir()
    (out / planted).symlink_to(victim)
    with pytest.raises((OSError, OutputDirError), match="is a symbolic link; the engine does not write through links"):
        run_job("pretrain", toy_cfg("video_pretrain", out, *ONE_EPOCH))
    assert victim.read_text() == "precious"


def test_checkpoints_get_the_permissions_of_the_runs_other_files(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, *ONE_EPOCH))
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
             for name in ("checkpoint-last.pth", "checkpoint-1.pth", "config.yaml", "log.jsonl", "log.txt")}
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_atomic_writer_temp_names_are_the_engines_only(tmp_path):
    names = {temp_path(tmp_path / "a.pth").name for _ in range(3)}
    assert len(names) == 3 and all(is_engine_temp(n) and n.startswith(".a.pth.") for n in names)
    assert not any(map(is_engine_temp, ["paper.tex.tmp.1", ".checkpoint-x.tmp", "a.pth", ".a.pth.12.engine-tmp"]))
    atomic_write_text(tmp_path / "a.txt", "one")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    atomic_write_text(tmp_path / "b.txt", "two")  # replaces the link, does not write through it
    assert (tmp_path / "a.txt").read_text() == "one" and not (tmp_path / "b.txt").is_symlink()


def _fill(target, count: int, fail_after=None):
    target.mkdir()
    for i in range(count):
        if i == fail_after:
            raise RuntimeError("killed")
        (target / f"{i}.txt").write_text(str(i))


def test_a_folder_is_built_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "data" / "kinetics"
    with pytest.raises(RuntimeError):
        build_folder_atomically(folder, lambda target: _fill(target, 4, fail_after=2))
    assert not folder.exists()
    assert build_folder_atomically(folder, lambda target: _fill(target, 4))
    assert sorted(p.name for p in folder.iterdir()) == ["0.txt", "1.txt", "2.txt", "3.txt"]
    assert not build_folder_atomically(folder, lambda target: _fill(target, 1))  # exists: left alone
    assert sorted(os.listdir(tmp_path / "data")) == [".kinetics.lock", "kinetics"]


def test_a_build_killed_midway_leaves_no_folder_and_the_rerun_builds_it(tmp_path):
    folder, marker = tmp_path / "kinetics", tmp_path / "half"
    script = ("import sys, time, pathlib\n"
              "from common.files import build_folder_atomically\n"
              "def build(target):\n"
              "    target.mkdir(); (target / '0.txt').write_text('0')\n"
              "    pathlib.Path(sys.argv[2]).write_text('written'); time.sleep(600)\n"
              "build_folder_atomically(sys.argv[1], build)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(folder), str(marker)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(marker.is_file, "the half-built folder", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
    assert not folder.exists() and [p for p in os.listdir(tmp_path) if is_engine_temp(p)]
    assert build_folder_atomically(folder, lambda target: _fill(target, 2))
    assert sorted(os.listdir(folder)) == ["0.txt", "1.txt"]
    assert sorted(os.listdir(tmp_path)) == [".kinetics.lock", "half", "kinetics"]  # the stale build was removed


def test_synthetic_dataset_interrupted_while_generating_is_regenerated(tmp_path, monkeypatch):
    import videoconvmae.modality as video_modality
    real = video_modality.write_motion_dataset

    def tiny(folder, fmt, **kwargs):  # the demo's dataset in miniature: 1 clip per class and split, 8 small frames
        return real(folder, fmt, **{**kwargs, "clips_per_class": (1, 1, 1), "num_frames": 8, "height": 32, "width": 32})

    def killed(folder, fmt, **kwargs):
        tiny(folder, fmt, **kwargs)
        os.remove(os.path.join(folder, "train.csv"))  # as if killed before the lists
        raise KeyboardInterrupt
    cfg = toy_cfg("video_pretrain", tmp_path / "out", "DATA.DATASET", "kinetics",
                  "DATA.PATH_TO_DATA_DIR", str(tmp_path / "data" / "kinetics"))
    monkeypatch.setattr(video_modality, "write_motion_dataset", killed)
    with pytest.raises(KeyboardInterrupt):
        cli.ensure_synthetic_dataset(cfg)
    assert not (tmp_path / "data" / "kinetics").exists()
    monkeypatch.setattr(video_modality, "write_motion_dataset", tiny)
    cli.ensure_synthetic_dataset(cfg)
    folder = tmp_path / "data" / "kinetics"
    assert sorted(p.name for p in folder.glob("*.csv")) == ["test.csv", "train.csv", "val.csv"]
    assert len(list(folder.rglob("*.mp4"))) == 3 * 4  # 3 splits x 4 classes
