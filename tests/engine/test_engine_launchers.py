"""Launchers: the tools' command line, torchrun with 2 CPU ranks (gloo), submitit's local executor."""
import csv
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import load_config
from common.engine import cli
from common.engine.jobs import run_job
from common.engine.launch import JobRunner, submit
from common.files import is_engine_temp
from tests.engine.toy_data import DEMO, real_cfg, real_overrides

REPO = Path(__file__).resolve().parents[2]


def _run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, **kw)


def _torchrun(tool, *args):
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                 str(REPO / "tools" / tool), *args])


@pytest.mark.slow
def test_torchrun_multiview_test_counts_each_video_once(tmp_path, video_data):
    """3 test videos on 2 ranks: the shards are 2 + 1, and predictions.csv has each video once."""
    run_job("finetune", real_cfg("video_finetune", tmp_path, video_data, "TRAIN.CHECKPOINT_FILE_PATH", ""))
    out = _torchrun("test.py", "--cfg", str(DEMO / "video_finetune.yaml"),
                    *real_overrides(tmp_path, video_data, "TEST.BATCH_SIZE", "4"))
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    lines = (video_data / "test.csv").read_text().split()
    assert sorted(r["path"] for r in rows) == sorted({r["path"] for r in rows}) and len(rows) == 3
    assert all(Path(r["path"]).name in " ".join(lines) for r in rows)
    assert json.loads((tmp_path / "test_results.json").read_text())["num_videos"] == 3


@pytest.mark.slow
def test_torchrun_ddp_pretraining(tmp_path, video_data):
    out = _torchrun("pretrain.py", "--cfg", str(DEMO / "video_pretrain.yaml"),
                    *real_overrides(tmp_path, video_data))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 rank(s)" in out.stdout + out.stderr
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and record["samples_per_s"] > 0


@pytest.mark.slow
def test_submitit_local_executor_runs_and_resumes(tmp_path, video_data):
    overrides = real_overrides(tmp_path / "run", video_data)
    job = submit("pretrain", str(DEMO / "video_pretrain.yaml"), overrides, job_dir=str(tmp_path / "run"),
                 gpus_per_node=0, timeout_min=4, cpus_per_task=1, cluster="local")
    assert job.result()["epoch"] == 1
    requeued = JobRunner("pretrain", str(DEMO / "video_pretrain.yaml"), overrides).checkpoint()
    assert requeued.function == JobRunner("pretrain", str(DEMO / "video_pretrain.yaml"), [*overrides, "OVERWRITE", "False"])


def test_a_requeue_resumes_also_a_run_started_with_overwrite():
    """OVERWRITE True on the first start; the requeue after a preemption must not delete the checkpoint
    the preemption has just saved."""
    requeued = JobRunner("pretrain", "recipe.yaml", ["OVERWRITE", "True", "SOLVER.MAX_EPOCH", "3"]).checkpoint()
    assert requeued.function == JobRunner("pretrain", "recipe.yaml", ["SOLVER.MAX_EPOCH", "3", "OVERWRITE", "False"])


def test_submit_rejects_unknown_job(tmp_path):
    with pytest.raises(ValueError, match="job must be one of"):
        submit("train", None, [], job_dir=str(tmp_path), cluster="local")


@pytest.mark.parametrize("tool", ["pretrain.py", "finetune.py", "linprobe.py", "test.py", "submit.py"])
def test_tools_document_themselves(tool, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [tool, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "tools" / tool), run_name="__main__")
    assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out.lower()


def test_cli_without_arguments_is_the_demo(monkeypatch):
    made = []
    monkeypatch.setattr(cli, "ensure_synthetic_dataset", lambda cfg: made.append(cfg.DATA.PATH_TO_DATA_DIR))
    cfg = cli.config_from_args("pretrain", [])
    demo_stage_1 = load_config(str(DEMO / "video_pretrain.yaml"))  # the demo's pretraining stage, as it is
    assert cfg.dump() == demo_stage_1.dump() and made == [cfg.DATA.PATH_TO_DATA_DIR]


def test_cli_overrides_and_errors(monkeypatch):
    cfg = cli.config_from_args("finetune", ["--cfg", str(DEMO / "video_finetune.yaml"), "SOLVER.MAX_EPOCH", "3"])
    assert cfg.SOLVER.MAX_EPOCH == 3
    with pytest.raises(ValueError, match="SOLVER.MAX_EPOC"):
        cli.config_from_args("finetune", ["--cfg", str(DEMO / "video_finetune.yaml"), "SOLVER.MAX_EPOC", "3"])


def test_ensure_synthetic_dataset_generates_once_with_the_modality_recipe(tmp_path, monkeypatch):
    from common.engine.demo import ensure_synthetic_dataset
    import videoconvmae.modality as video_modality
    calls = []

    def make(folder, fmt, **kw):  # stands for the generator: writes the dataset into folder
        calls.append((folder, fmt, kw))
        folder.mkdir()
        (folder / "train.csv").write_text("a.mp4 0\n")
    monkeypatch.setattr(video_modality, "write_motion_dataset", make)
    cfg = load_config(str(DEMO / "video_pretrain.yaml"), ["DATA.PATH_TO_DATA_DIR", str(tmp_path / "kinetics")])
    ensure_synthetic_dataset(cfg)
    [(folder, fmt, kw)] = calls  # generated in a temp folder beside the dataset, then renamed into place
    assert folder.parent.parent == tmp_path and is_engine_temp(folder.parent.name) and not folder.exists()
    assert (fmt, kw) == ("kinetics", {"num_classes": 4, "progress": True, **video_modality.SYNTHETIC_RECIPE})
    assert (tmp_path / "kinetics" / "train.csv").read_text() == "a.mp4 0\n"
    ensure_synthetic_dataset(cfg)
    assert len(calls) == 1
