"""Using a trained run on files: load_run, predict_files / tools/predict.py, class names."""
from __future__ import annotations

import csv
import ctypes
import json
import os
import subprocess
import sys

import pytest
import torch

from common.checkpoint import CheckpointError, safe_load
from common.config import config_from_yaml
from common.data import build_dataset
from common.engine.builders import build_model
from common.data.class_names import read_class_names
from common.engine.inference import collect_inputs, load_run, predict_files
from common.errors import UserError
from common.models import create_model
from common.engine.jobs import run_job
from tests.engine.inference_runs import NO_WORKERS, REPO, tool, trained_runs, write_motion_video  # noqa: F401
from tests.engine.toy_data import real_cfg

NAMES = ["direction_000", "direction_120", "direction_240"]  # the generator's classids.json, 3 classes


def _test_videos(video_data):
    return sorted(str(p) for p in (video_data / "test").rglob("*.mp4"))


def _normalised(views: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (V, C, T, H, W) -> float, written out: (x / 255 - mean) / std per channel."""
    shape = (1, -1, 1, 1, 1)
    return (views.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(shape)) / torch.tensor(
        std, dtype=torch.float64).view(shape)


def test_finetuned_run_loads_in_one_call_and_scores_as_the_test_job(trained_runs, video_data):
    loaded = load_run(trained_runs["ft"], overrides=NO_WORKERS)
    cfg = config_from_yaml((trained_runs["ft"] / "config.yaml").read_text(), "config.yaml")
    assert not loaded.model.training and not loaded.pretraining
    assert loaded.class_names == NAMES
    p = loaded.preprocessing
    assert (p.crop_size, p.num_frames, p.sampling_rate, p.views) == (32, 4, 4, (2, 3))
    assert (list(p.mean), list(p.std)) == (list(cfg.DATA.MEAN), list(cfg.DATA.STD))

    # The test job's model rebuilt by hand from the same checkpoint, on the test job's views.
    reference = build_model(cfg, pretraining=False, crop_size=cfg.DATA.TEST_CROP_SIZE)
    reference.load_state_dict(safe_load(trained_runs["ft"] / "checkpoint-last.pth")["model"])
    reference.eval()
    dataset = build_dataset(real_cfg("video_finetune", trained_runs["ft"], video_data), "test")
    item = dataset[0]
    views = _normalised(item["video"], cfg.DATA.MEAN, cfg.DATA.STD).float()
    with torch.no_grad():
        assert torch.equal(loaded.model(views), reference(views))
        expected = reference(views).softmax(dim=-1).mean(dim=0)

    predictions = predict_files(loaded, _test_videos(video_data), topk=3)
    rows = {r["path"]: r for r in csv.DictReader((trained_runs["ft"] / "predictions.csv").open())}
    assert len(predictions) == len(rows) == 3
    for prediction in predictions:
        row = rows[prediction.path]
        assert [c["id"] for c in prediction.topk] == [int(i) for i in row["top5"].split()]
        assert row["name"] == NAMES[int(row["prediction"])] == prediction.topk[0]["name"]
        assert prediction.num_views == int(row["num_views"]) == 6
    first = next(p for p in predictions if p.path == item["path"])
    assert [c["score"] for c in first.topk] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-6)


def test_predict_tool_on_mp4_webm_and_a_broken_file(trained_runs, video_data, tmp_path, capsys):
    webm = write_motion_video(tmp_path / "clip.webm", num_frames=20, label=1)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    mp4 = _test_videos(video_data)[0]
    out = tmp_path / "predictions.jsonl"
    tool("predict", "--run", trained_runs["ft"], "--workers", 0, "--topk", 2, "--output", out, mp4, webm, broken)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records] == [mp4, str(webm), str(broken)]
    for record in records[:2]:
        assert record["error"] == "" and record["num_views"] == 6 and len(record["topk"]) == 2
        assert {c["name"] for c in record["topk"]} <= set(NAMES)
        assert all(c["name"] == NAMES[c["id"]] for c in record["topk"])
        scores = [c["score"] for c in record["topk"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert records[2]["topk"] == [] and records[2]["num_views"] == 0 and str(broken) in records[2]["error"]
    table = capsys.readouterr().out
    assert f"{broken}" in table and "ERROR" in table and records[0]["topk"][0]["name"] in table


def test_predict_tool_on_an_image_run(tmp_path, image_data, capsys):
    run_job("finetune", real_cfg("image_finetune", tmp_path / "ft", image_data, "TRAIN.CHECKPOINT_FILE_PATH", ""))
    image = next((image_data / "val" / "class_1").glob("*.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "p.jsonl"
    tool("predict", "--run", tmp_path / "ft", "--workers", 0, "--output", out, image, broken)
    good, bad = [json.loads(line) for line in out.read_text().splitlines()]
    assert good["num_views"] == 1 and [c["name"] for c in good["topk"]] == [f"class_{c['id']}" for c in good["topk"]]
    assert len(good["topk"]) == 3 and sum(c["score"] for c in good["topk"]) == pytest.approx(1.0, abs=1e-5)
    assert bad["error"].startswith(str(broken)) and bad["topk"] == []
    assert "class_" in capsys.readouterr().out


def test_bare_checkpoint_with_a_model_name(tmp_path):
    """An official-style file (only ``model``): sizes are the model's defaults, classes from the head."""
    sizes = dict(embed_dim=[16, 24, 32], depth=[1, 1, 1], mlp_ratio=[2.0, 2.0, 2.0], num_heads=2)
    model = create_model("convvit_small_patch16", num_classes=7, img_size=64, **sizes)
    torch.save({"model": model.state_dict()}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match="stores no config: pass model_name"):
        load_run(checkpoint=tmp_path / "official.pth")
    overrides = {"DATA.TEST_CROP_SIZE": 64, **{f"MODEL.{k.upper()}": v for k, v in sizes.items()}}
    loaded = load_run(checkpoint=tmp_path / "official.pth", model_name="convvit_small_patch16", overrides=overrides)
    assert loaded.cfg.MODEL.NUM_CLASSES == 7 and loaded.modality.name == "image"
    assert loaded.preprocessing.views == (1, 1) and loaded.preprocessing.num_frames is None
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model.eval()(x))


def test_wrong_files_give_clear_errors(tmp_path, trained_runs):
    with pytest.raises(UserError, match="no checkpoint-last.pth"):
        load_run(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_run(checkpoint=tmp_path / "notes.pth")
    with pytest.raises(CheckpointError, match="is a pretraining checkpoint but model video_convvit_small_patch16"):
        load_run(checkpoint=trained_runs["pre"] / "checkpoint-last.pth", model_name="video_convvit_small_patch16")
    with pytest.raises(UserError, match="pretraining checkpoint: it has no classifier"):
        predict_files(load_run(trained_runs["pre"], overrides=NO_WORKERS), ["x.mp4"])


def test_class_names_files(tmp_path):
    ssv2 = tmp_path / "labels.json"
    ssv2.write_text(json.dumps({"Pushing something": "1", "Holding something": "0"}))
    assert read_class_names(str(ssv2)) == ["Holding something", "Pushing something"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": 0, "b": 5}))
    with pytest.raises(ValueError, match="bad.json"):
        read_class_names(str(bad))


def test_inputs_from_folders_and_files(tmp_path, video_data):
    from common.modality import get_modality
    video = get_modality("video")
    (tmp_path / "notes.txt").write_text("x")
    files = collect_inputs([video_data / "test", tmp_path / "notes.txt"], video)
    assert files[-1] == (str(tmp_path / "notes.txt"), "notes.txt")
    assert [rel for _, rel in files[:-1]] == sorted(
        str(p.relative_to(video_data / "test")) for p in (video_data / "test").rglob("*.mp4"))
    assert collect_inputs([video_data / "test", video_data / "test"], video) == files[:-1]  # each file once
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.mp4").write_bytes(b"")
    with pytest.raises(UserError, match="same relative path x.mp4"):
        collect_inputs([tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4"], video)


@pytest.mark.parametrize("name", ["predict", "extract_features"])
def test_tools_document_themselves(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool(name, "--help")
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--run" in out and "--run-dir" in out and "--checkpoint" in out


def _recorded_forwards(model):
    """Batch sizes of every forward of ``model`` (and of its encoder stages), appended as they happen."""
    sizes = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    return sizes


def test_predict_and_clip_features_forward_at_most_test_clips_per_forward(trained_runs, video_data):
    """The test job's bound on views per forward holds for predict and features too (3 videos x 6
    views in one TEST.BATCH_SIZE batch of 2 videos = 12 clips), and the results do not change."""
    from common.engine.features import extract_clip_features
    videos = _test_videos(video_data)
    whole = load_run(trained_runs["ft"], overrides={**NO_WORKERS, "TEST.CLIPS_PER_FORWARD": 0})
    bounded = load_run(trained_runs["ft"], overrides={**NO_WORKERS, "TEST.CLIPS_PER_FORWARD": 4})
    sizes = _recorded_forwards(bounded.model)
    reference = predict_files(whole, videos, topk=3)
    predicted = predict_files(bounded, videos, topk=3)
    assert max(sizes) == 4 and sum(sizes) == 3 * 6
    assert [[c["id"] for c in p.topk] for p in predicted] == [[c["id"] for c in p.topk] for p in reference]
    for mine, theirs in zip(predicted, reference):
        assert [c["score"] for c in mine.topk] == pytest.approx([c["score"] for c in theirs.topk], abs=1e-6)
    pre = load_run(trained_runs["pre"], overrides={**NO_WORKERS, "TEST.CLIPS_PER_FORWARD": 4})
    calls = []
    original = pre.model.forward_conv_stages
    pre.model.forward_conv_stages = lambda x: calls.append(len(x)) or original(x)
    features = extract_clip_features(pre, videos).features
    assert max(calls) == 4 and sum(calls) == 3 * 6
    unbounded = load_run(trained_runs["pre"], overrides={**NO_WORKERS, "TEST.CLIPS_PER_FORWARD": 0})
    torch.testing.assert_close(torch.from_numpy(features),
                               torch.from_numpy(extract_clip_features(unbounded, videos).features), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ manifests, non-finite weights, outputs first


def _user_error(capsys, name, *argv):
    """Run ``tools/<name>.py`` expecting a user error: its one-line message (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        tool(name, *argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_a_predict_rerun_with_other_options_is_refused_and_failed_files_are_retried(trained_runs, video_data,
                                                                                      tmp_path, capsys):
    mp4 = _test_videos(video_data)[0]
    late = tmp_path / "late.mp4"
    late.write_bytes(b"still downloading")
    out = tmp_path / "p.jsonl"
    args = ["--run", trained_runs["ft"], "--workers", 0, "--output", out]
    tool("predict", *args, "--topk", 2, mp4, late)
    first = out.read_text().splitlines()
    manifest = json.loads((tmp_path / "p.jsonl.manifest.json").read_text())
    assert manifest["settings"]["topk"] == 2 and manifest["inputs"] == [mp4, str(late)]
    err = _user_error(capsys, "predict", *args, "--topk", 3, mp4, late)
    assert "topk: saved 2, now 3" in err and "--overwrite" in err and str(out) in err
    assert out.read_text().splitlines() == first
    write_motion_video(late, num_frames=20, label=1)
    predictions = tool("predict", *args, "--topk", 2, mp4, late)
    lines = out.read_text().splitlines()
    assert lines[0] == first[0] and not json.loads(lines[1])["error"] and len(json.loads(lines[1])["topk"]) == 2
    assert [p.path for p in predictions] == [mp4, str(late)]
    assert "1 predicted, 1 done before, 0 unreadable" in capsys.readouterr().out
    tool("predict", *args, "--topk", 3, "--overwrite", mp4, late)
    assert all(len(json.loads(line)["topk"]) == 3 for line in out.read_text().splitlines())


def _with_non_finite(source, target, names):
    state = torch.load(source, map_location="cpu", weights_only=False)
    for name, value in names.items():
        state["model"][name].view(-1)[0] = value
    torch.save(state, target)
    return target


def test_non_finite_weights_are_refused_naming_the_tensors(trained_runs, video_data, tmp_path, capsys):
    bad = _with_non_finite(trained_runs["ft"] / "checkpoint-last.pth", tmp_path / "nan.pth",
                           {"head.weight": float("nan"), "pos_embed": float("inf")})
    with pytest.raises(CheckpointError, match=r"non-finite values.*head\.weight.*pos_embed|non-finite values.*"
                                              r"pos_embed.*head\.weight") as error:
        load_run(trained_runs["ft"], checkpoint=bad)
    assert str(bad) in str(error.value)
    out = tmp_path / "p.jsonl"
    err = _user_error(capsys, "predict", "--run", trained_runs["ft"], "--checkpoint", bad, "--workers", 0,
                      "--output", out, video_data / "test")
    assert "head.weight" in err and not out.exists()


def _strict_json(line):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(line, parse_constant=refuse)


def test_predictions_are_valid_json_when_a_score_is_not_finite(trained_runs, video_data, tmp_path, monkeypatch):
    """fp16 overflow or a bad input can still make a finite model output NaN: that file gets an
    error, the file stays valid JSON (no NaN literal)."""
    import common.engine.inference as inference
    real = inference.batch_scores

    def first_file_nan(*args, **kwargs):
        scores, views = real(*args, **kwargs)
        scores[0] = float("nan")
        return scores, views

    monkeypatch.setattr(inference, "batch_scores", first_file_nan)
    videos = _test_videos(video_data)
    out = tmp_path / "p.jsonl"
    tool("predict", "--run", trained_runs["ft"], "--workers", 0, "--batch-size", 2, "--output", out, *videos[:2])
    records = [_strict_json(line) for line in out.read_text().splitlines()]
    assert "non-finite" in records[0]["error"] and records[0]["topk"] == [] and not records[1]["error"]


@pytest.fixture
def no_inference(monkeypatch):
    """Fails the test if a tool starts inference."""
    import common.engine.features as features
    import common.engine.inference as inference

    def started(*args, **kwargs):
        raise AssertionError("inference started before the output was checked")

    for module, name in [(inference, "predict_files"), (features, "extract_clip_features"),
                         (features, "extract_window_features")]:
        monkeypatch.setattr(module, name, started)


@pytest.mark.parametrize("name, output, expected", [
    ("predict", "folder", "is a directory"),
    ("predict", "file/p.jsonl", "is not a directory"),
    ("extract_features", "file", "is not a directory"),
    ("extract_features", "file/feats", "is not a directory"),
])
def test_outputs_are_checked_before_any_inference(trained_runs, video_data, tmp_path, capsys, no_inference, name,
                                                  output, expected):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("a file")
    err = _user_error(capsys, name, "--run", trained_runs["ft"], "--workers", 0, "--output", tmp_path / output,
                      video_data / "test")
    assert str(tmp_path / output) in err and expected in err
    assert (tmp_path / "file").read_text() == "a file" and list((tmp_path / "folder").iterdir()) == []


def _without_root_override():
    """Subprocess set-up: a root process loses CAP_DAC_OVERRIDE (the kernel then applies the
    owner's permission bits to it), so a chmod 555 folder is read-only to it as to anyone."""
    if os.geteuid() == 0:
        ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1


@pytest.mark.slow
@pytest.mark.parametrize("name, output", [("predict", "p.jsonl"), ("extract_features", "feats")])
def test_a_read_only_output_folder_is_one_line_before_any_inference(trained_runs, video_data, tmp_path, name, output):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"],
                           capture_output=True, preexec_fn=_without_root_override)
    if probe.returncode == 0:
        folder.chmod(0o755)
        pytest.skip("this process can write into a chmod 555 folder (root that cannot drop CAP_DAC_OVERRIDE)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), "--run", str(trained_runs["ft"]),
                           "--workers", "0", "--output", str(folder / output), str(video_data / "test")],
                          env=env, capture_output=True, text=True, timeout=240, preexec_fn=_without_root_override)
    folder.chmod(0o755)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cannot write --output") and "Permission denied" in lines[-1]
    assert "Traceback" not in done.stderr and done.stdout == ""  # no table, no summary: nothing was computed
    assert list(folder.iterdir()) == []
