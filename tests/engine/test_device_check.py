"""benchmarks/device_check.py: the GPU check's code, run on the CPU at its tiny size, and its checks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.scripts import registered_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "device_check.py"
STEP_FIGURES = [f"{w}_{v}_{f}" for w in ("video", "image") for v in ("dense", "sparse", "compiled")
                for f in ("step_s", "peak_mib")]


@pytest.fixture(scope="module")
def device_check():
    yield from registered_script("benchmarks/device_check.py", "device_check_benchmark")


@pytest.mark.slow
def test_tiny_device_check_passes_on_the_cpu(tmp_path):
    """Steps, loader and the pretrain -> finetune -> test chain under torchrun (2 CPU processes);
    ``aot_eager`` for the compiled step (inductor's C++ build would take minutes here)."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--output-dir", str(tmp_path),
                           "--compile-backend", "aot_eager", "--reps", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["checks"] and all(report["checks"].values()), report["checks"]
    assert set(report["checks"]) == {"each_test_video_once", "every_view_of_each_video",
                                     "results_count_each_video_once", "pretrain_checkpoint_loads_on_cpu",
                                     "finetune_checkpoint_loads_on_cpu", "pretrain_loss_finite"}
    assert all(report[key] > 0 for key in STEP_FIGURES), {k: report[k] for k in STEP_FIGURES}
    assert report["chain_processes"] == 2 and report["chain_test_videos"] == 9
    assert report["loader_clips_per_s"] > 0 and report["pretrain_clips_per_s"] > 0
    assert 0 <= report["pretrain_data_wait_share"] <= 1
    rows = (tmp_path / "chain" / "test" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 9


def _rows(paths, views=6):
    return [{"path": p, "num_views": str(views), "error": ""} for p in paths]


def test_prediction_checks_catch_a_video_counted_twice_or_missing_views(device_check, tmp_path):
    videos = [str(tmp_path / f"{i}.mp4") for i in range(3)]
    good = device_check.prediction_checks(_rows(videos), {"num_videos": 3}, videos, views=6)
    assert good == {"each_test_video_once": True, "every_view_of_each_video": True,
                    "results_count_each_video_once": True}
    twice = device_check.prediction_checks(_rows(videos + videos[:1]), {"num_videos": 4}, videos, views=6)
    assert not twice["each_test_video_once"] and not twice["results_count_each_video_once"]
    missing = device_check.prediction_checks(_rows(videos[:2]), {"num_videos": 3}, videos, views=6)
    assert not missing["each_test_video_once"]
    assert not device_check.prediction_checks(_rows(videos, views=5), {"num_videos": 3}, videos,
                                              views=6)["every_view_of_each_video"]


def test_listed_test_videos_reads_the_kinetics_list(device_check, tmp_path):
    (tmp_path / "test.csv").write_text("test/a/00001.mp4 0\ntest/b/00002.mp4 1\n\n")
    assert device_check.listed_test_videos(tmp_path) == [str(tmp_path / "test/a/00001.mp4"),
                                                         str(tmp_path / "test/b/00002.mp4")]


def test_listed_test_videos_reads_quoted_paths_as_the_datasets_do(device_check, tmp_path):
    (tmp_path / "test.csv").write_text('"test/a b/clip, 1.mp4",0\n')
    assert device_check.listed_test_videos(tmp_path) == [str(tmp_path / "test/a b/clip, 1.mp4")]


def test_the_tiny_data_has_its_own_folder_and_is_built_whole(device_check, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()  # the full-size data of an earlier run: not taken for the tiny set
    calls = []

    def fake_write(target, layout, **kwargs):
        calls.append(target)
        Path(target).mkdir(parents=True)
        (Path(target) / "test.csv").write_text("")

    monkeypatch.setattr(device_check, "write_motion_dataset", fake_write)
    assert device_check.make_data(tmp_path, tiny=True) == tmp_path / "data-tiny"
    assert (tmp_path / "data-tiny" / "test.csv").is_file() and calls[0] != tmp_path / "data-tiny"  # built elsewhere, renamed
    assert device_check.make_data(tmp_path, tiny=True) == tmp_path / "data-tiny" and len(calls) == 1  # kept
