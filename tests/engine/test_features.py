"""Encoder features: clip and window modes, pretraining and classifier runs, resume, 2 ranks."""
from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.checkpoint import load_pretrained_into_classifier, safe_load
from common.config import config_from_yaml
from common.data import build_dataset
from common.engine.builders import build_model
from common.engine.features import embed, extract_clip_features, extract_window_features, load_clip_features
from common.engine.inference import load_run
from common.manifest import OutputError
from tests.engine.inference_runs import NO_WORKERS, REPO, tool, trained_runs, write_motion_video  # noqa: F401
from tests.engine.toy_data import real_cfg
from videoconvmae.data import CentreViewTransform, build_decoder
from videoconvmae.data.windows import window_count


def _cfg(run):
    return config_from_yaml((run / "config.yaml").read_text(), "config.yaml")


def _reference_encoder(run):
    """The run's encoder built independently: a classifier loaded as the job loads it; for a
    pretraining run, one without head and with the encoder's ``norm`` (global_pool off)."""
    cfg, path = _cfg(run), run / "checkpoint-last.pth"
    weights = safe_load(path)
    if "decoder_pred.weight" in weights["model"]:
        cfg.defrost()
        cfg.MODEL.NAME, cfg.MODEL.NUM_CLASSES, cfg.MODEL.GLOBAL_POOL = "video_convvit_small_patch16", 0, False
        model = build_model(cfg, pretraining=False, crop_size=cfg.DATA.TEST_CROP_SIZE)
        missing, unexpected = load_pretrained_into_classifier(model, weights)
        assert not missing and not unexpected
    else:
        model = build_model(cfg, pretraining=False, crop_size=cfg.DATA.TEST_CROP_SIZE)
        model.load_state_dict(weights["model"])
    return model.eval(), cfg


def _pooled(reference, x):
    """The classifier's pre-logits features through its timm interface."""
    return reference.forward_head(reference.forward_features(x), pre_logits=True)


def _views(item, cfg):
    shape = (1, -1, 1, 1, 1)
    mean, std = torch.tensor(cfg.DATA.MEAN).view(shape), torch.tensor(cfg.DATA.STD).view(shape)
    return ((item["video"].double() / 255 - mean) / std).float()


@pytest.mark.parametrize("run", ["ft", "pre"])
def test_clip_features_are_the_view_average_of_the_encoder(trained_runs, video_data, run):
    loaded = load_run(trained_runs[run], overrides=NO_WORKERS)
    assert loaded.pretraining == (run == "pre")
    reference, cfg = _reference_encoder(trained_runs[run])
    dataset = build_dataset(real_cfg("video_finetune", trained_runs[run], video_data), "test")
    paths = [dataset[i]["path"] for i in range(len(dataset))]
    result = extract_clip_features(loaded, paths)
    assert result.paths == paths and result.features.shape == (3, 32) and not result.errors
    with torch.no_grad():
        expected = np.stack([_pooled(reference, _views(dataset[i], cfg)).mean(dim=0).numpy()
                             for i in range(len(dataset))])
    np.testing.assert_allclose(result.features, expected, atol=1e-5)
    grid = extract_clip_features(loaded, paths[:1], pool="none").features
    assert grid.shape == (1, 2, 2, 2, 32)  # 4 frames / tubelet 2, 32 px / stride 16


def test_window_features_equal_a_single_clip_forward_on_each_window(trained_runs, video_data):
    loaded = load_run(trained_runs["pre"], overrides=NO_WORKERS)
    reference, cfg = _reference_encoder(trained_runs["pre"])
    path = sorted(str(p) for p in (video_data / "test").rglob("*.mp4"))[0]  # 24 frames at 30 fps
    result = extract_window_features(loaded, path, window_stride=1, batch_size=2)  # windows cross batches
    # 24 frames at sampling rate 4: 6 sampled frames; windows of 4, stride 1: 3 windows.
    assert result.features.shape == (3, 32) and result.num_frames == 24 and result.fps == 30.0
    assert result.start_frames == [0, 4, 8] and result.start_seconds == pytest.approx([0.0, 4 / 30, 8 / 30])
    decoder = build_decoder("decord")
    centre = CentreViewTransform(crop_size=32, mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    for k in range(3):
        frames = [torch.arange(4) * 4 + 4 * k]  # window k: sampled frames k..k+3 = source frames 4k, 4k+4, ...
        clip = centre(decoder.decode(path, lambda n, f=frames: f).clip(0))
        with torch.no_grad():
            expected = _pooled(reference, clip[None])[0].numpy()
        np.testing.assert_allclose(result.features[k], expected, atol=1e-5)
    grid = extract_window_features(loaded, path, window_stride=2, pool="none")
    assert grid.features.shape == (2, 2, 2, 2, 32)
    x = torch.randn(2, 3, 4, 32, 32)
    assert torch.allclose(embed(loaded.model, x), _pooled(reference, x), atol=1e-5)


@pytest.mark.parametrize("frames, window, stride, rate, expected", [
    (24, 4, 1, 4, 3), (24, 4, 2, 4, 2), (10, 4, 1, 4, 1), (40, 4, 3, 4, 3), (1800, 16, 8, 1, 224), (1801, 16, 8, 1, 224),
    (1808, 16, 8, 1, 225)])
def test_window_count_formula(frames, window, stride, rate, expected):
    sampled = (frames - 1) // rate + 1  # source frames 0, rate, 2 rate, ... below `frames`
    assert expected == max(sampled - window, 0) // stride + 1
    assert window_count(frames, window_frames=window, window_stride=stride, sampling_rate=rate) == expected


def test_extract_tool_window_mode_resumes_and_lists_bad_files(trained_runs, tmp_path, capsys):
    videos = tmp_path / "videos"
    write_motion_video(videos / "a" / "long.webm", num_frames=40)  # 10 sampled frames
    write_motion_video(videos / "short.mp4", num_frames=10)  # 3 sampled frames: one window
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    out = tmp_path / "features"
    args = ["--run", trained_runs["ft"], "--workers", 0, "--output", out, "--window-stride", 3, videos]
    first = tool("extract_features", *args)
    assert (first["written"], first["skipped"], first["failed"]) == (2, 0, 1)
    assert str(videos / "broken.mp4") in first["failed_files"]
    long = np.load(out / "a" / "long.webm.npy")
    assert long.shape == (3, 32) and np.load(out / "short.mp4.npy").shape == (1, 32)  # (10 - 4) // 3 + 1 = 3
    times = json.loads((out / "a" / "long.webm.json").read_text())
    assert times["start_seconds"] == pytest.approx([0.0, 12 / 30, 24 / 30]) and times["start_frames"] == [0, 12, 24]
    stamp = os.stat(out / "a" / "long.webm.npy").st_mtime_ns
    second = tool("extract_features", *args)
    assert (second["written"], second["skipped"], second["failed"]) == (0, 2, 1)
    assert os.stat(out / "a" / "long.webm.npy").st_mtime_ns == stamp
    assert "unreadable: " + str(videos / "broken.mp4") in capsys.readouterr().out
    longer = tool("extract_features", "--run", trained_runs["pre"], "--workers", 0, "--output", tmp_path / "w8",
                  "--window-frames", 8, "--window-stride", 2, "--pool", "none", videos / "a")
    assert longer["written"] == 1 and np.load(tmp_path / "w8" / "long.webm.npy").shape == (2, 4, 2, 2, 32)


def test_extract_tool_clip_mode_and_rerun(trained_runs, video_data, tmp_path):
    out = tmp_path / "clips"
    args = ["--run", trained_runs["pre"], "--workers", 0, "--output", out, video_data / "test"]
    assert tool("extract_features", *args)["written"] == 3
    rows = list(csv.DictReader((out / "index.csv").open()))
    expected = extract_clip_features(load_run(trained_runs["pre"], overrides=NO_WORKERS), [r["path"] for r in rows])
    np.testing.assert_array_equal(np.load(out / "features.npy"), expected.features)
    assert tool("extract_features", *args)["skipped"] == 3


def _torchrun(tool_name, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(REPO / "tools" / f"{tool_name}.py"), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_two_ranks_predict_and_extract_each_file_once(trained_runs, video_data, tmp_path):
    """torchrun with 2 CPU ranks (gloo): 3 videos + 1 broken file; one merged JSONL, each window
    output written by exactly one rank."""
    (tmp_path / "broken.mp4").write_bytes(b"junk")
    inputs = [video_data / "test", tmp_path / "broken.mp4"]
    out = _torchrun("predict", "--run-dir", trained_runs["ft"], "--workers", 0, "--output", tmp_path / "p.jsonl", *inputs,
                    cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(records) == 4 and len({r["path"] for r in records}) == 4
    assert [bool(r["error"]) for r in records] == [False, False, False, True]
    assert out.stdout.count("predictions written") == 1  # the main rank reports
    out = _torchrun("extract_features", "--run-dir", trained_runs["pre"], "--workers", 0, "--output", tmp_path / "w",
                    "--window-stride", 2, *inputs, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (summary["written"], summary["failed"]) == (3, 1)  # 3 videos over 2 ranks: a video twice would give 4
    assert len(list((tmp_path / "w").rglob("*.npy"))) == 3 and out.stdout.count('"written"') == 1


# ------------------------------------------------------------------ results that prove what made them


def _refused(capsys, *argv):
    """Run extract_features expecting a user error: its one-line message (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        tool("extract_features", *argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def _folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_with_other_settings_is_refused_naming_the_difference(trained_runs, video_data, tmp_path, capsys):
    """Another --pool, checkpoint, input set or window stride than the folder was made with: one
    line naming the difference, nothing touched; --overwrite starts over."""
    out = tmp_path / "clips"
    base = ["--workers", 0, "--output", out]
    tool("extract_features", "--run", trained_runs["pre"], *base, video_data / "test")
    before = _folder_bytes(out)
    manifest = json.loads((out / "manifest.json").read_text())
    checkpoint = trained_runs["pre"] / "checkpoint-last.pth"
    assert manifest["settings"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert manifest["settings"]["model"] == "videoconvmae_small_patch16" and manifest["settings"]["pool"] == "mean"
    assert manifest["code"]["version"] == importlib.metadata.version("videoconvmae")
    assert set(manifest["files"]) == {"features.npy", "index.csv", "errors.json"}

    err = _refused(capsys, "--run", trained_runs["pre"], *base, "--pool", "none", video_data / "test")
    assert "pool: saved 'mean', now 'none'" in err and "--overwrite" in err and str(out) in err
    err = _refused(capsys, "--run", trained_runs["ft"], *base, video_data / "test")
    assert "checkpoint_sha256: saved" in err and "model: saved 'videoconvmae_small_patch16'" in err
    first = sorted(str(p) for p in (video_data / "test").rglob("*.mp4"))[0]
    err = _refused(capsys, "--run", trained_runs["pre"], *base, first)
    assert "inputs: 2 removed" in err
    assert _folder_bytes(out) == before

    again = tool("extract_features", "--run", trained_runs["pre"], *base, "--pool", "none", "--overwrite",
                 video_data / "test")
    assert again["written"] == 3 and np.load(out / "features.npy").shape == (3, 2, 2, 2, 32)

    windows = tmp_path / "windows"
    args = ["--run", trained_runs["pre"], "--workers", 0, "--output", windows, video_data / "test"]
    tool("extract_features", *args, "--window-stride", 1)
    err = _refused(capsys, *args, "--window-stride", 2)
    assert "window_stride: saved 1, now 2" in err


def test_clip_mode_retries_failed_inputs_until_they_succeed(trained_runs, video_data, tmp_path):
    videos = sorted(str(p) for p in (video_data / "test").rglob("*.mp4"))[:2]
    broken = tmp_path / "late.mp4"
    broken.write_bytes(b"\x00" * 100)  # not downloaded completely yet
    out = tmp_path / "clips"
    args = ["--run", trained_runs["pre"], "--workers", 0, "--output", out, videos[0], broken, videos[1]]
    first = tool("extract_features", *args)
    assert (first["written"], first["skipped"], first["failed"]) == (2, 0, 1)
    second = tool("extract_features", *args)  # still broken: tried again, still in the summary
    assert (second["written"], second["skipped"], second["failed"]) == (0, 2, 1)
    assert list(second["failed_files"]) == [str(broken)]
    write_motion_video(broken, num_frames=24, label=2)  # the download finished
    third = tool("extract_features", *args)
    assert (third["written"], third["skipped"], third["failed"]) == (1, 2, 0)
    rows = [r["path"] for r in csv.DictReader((out / "index.csv").open())]
    assert rows == [videos[0], str(broken), videos[1]]  # input order
    expected = extract_clip_features(load_run(trained_runs["pre"], overrides=NO_WORKERS), rows).features
    np.testing.assert_allclose(np.load(out / "features.npy"), expected, atol=1e-6)
    assert json.loads((out / "errors.json").read_text()) == {}
    assert tool("extract_features", *args)["skipped"] == 3


def _cut_at_rename(monkeypatch, name):
    """Make the rename of the next file called ``name`` raise, as a kill between two writes would."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if os.path.basename(dst) == name:
            raise KeyboardInterrupt(f"killed before {name} was renamed")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


def _consistent(out):
    """features.npy rows, index.csv rows: the same count."""
    rows = list(csv.DictReader((out / "index.csv").open()))
    return len(rows) == len(np.load(out / "features.npy"))


def test_a_result_set_cut_between_its_files_is_never_taken_as_done(trained_runs, video_data, tmp_path, monkeypatch):
    """A kill between features.npy and index.csv (of another input set, or of a retry) must not let
    a rerun pair one set's features with another's index and call it done."""
    videos = sorted(str(p) for p in (video_data / "test").rglob("*.mp4"))
    out = tmp_path / "clips"
    base = ["--run", trained_runs["pre"], "--workers", 0, "--output", out]
    tool("extract_features", *base, *videos)
    with monkeypatch.context() as patch:
        _cut_at_rename(patch, "index.csv")
        try:
            tool("extract_features", *base, *videos[:2])  # other inputs, cut between the files
        except (KeyboardInterrupt, SystemExit):
            pass
    rerun = tool("extract_features", *base, *videos)
    assert _consistent(out) and len(np.load(out / "features.npy")) == 3
    expected = extract_clip_features(load_run(trained_runs["pre"], overrides=NO_WORKERS), videos).features
    np.testing.assert_allclose(np.load(out / "features.npy"), expected, atol=1e-6)
    assert rerun["failed"] == 0

    broken = tmp_path / "late.mp4"
    broken.write_bytes(b"junk")
    retry = ["--run", trained_runs["pre"], "--workers", 0, "--output", tmp_path / "retry", videos[0], broken]
    tool("extract_features", *retry)
    write_motion_video(broken, num_frames=24, label=1)
    assert load_clip_features(tmp_path / "retry").paths == [videos[0]]
    with monkeypatch.context() as patch:
        _cut_at_rename(patch, "index.csv")
        with pytest.raises(KeyboardInterrupt):
            tool("extract_features", *retry)  # the retry's new set is cut between its files
    with pytest.raises(OutputError, match="holds no complete clip-feature set"):
        load_clip_features(tmp_path / "retry")  # a reader never gets the cut set
    summary = tool("extract_features", *retry)
    assert (summary["written"], summary["failed"]) == (2, 0) and _consistent(tmp_path / "retry")
    assert load_clip_features(tmp_path / "retry").paths == [videos[0], str(broken)]


def test_a_second_writer_is_refused_and_stale_temp_files_are_removed(trained_runs, video_data, tmp_path, capsys):
    from common.files import exclusive_lock_or_fail, temp_path
    out = tmp_path / "windows"
    (out / "a").mkdir(parents=True)
    stale = [temp_path(out / "features.npy"), temp_path(out / "a" / "x.mp4.npy")]
    foreign = [out / "notes.tmp", out / "a" / ".x.mp4.npy.tmp"]
    for path in stale + foreign:
        path.write_text("left behind")
    args = ["--run", trained_runs["pre"], "--workers", 0, "--output", out, "--window-stride", 2, video_data / "test"]
    with exclusive_lock_or_fail(out / ".run.lock"):  # stands for another extraction still writing
        err = _refused(capsys, *args)
    assert "in use by another" in err and str(out) in err
    assert tool("extract_features", *args)["written"] == 3
    assert not any(p.exists() for p in stale) and all(p.read_text() == "left behind" for p in foreign)
