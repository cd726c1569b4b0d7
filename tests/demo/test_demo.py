"""The one-command demo, shortened: every stage runs end to end and writes well-formed results
and pictures. The accuracy margin is the demo's report, not asserted here."""
from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from common.config import load_config
from common.data import build_dataset
from common.engine.demo import RESULTS_FILE, first_and_last_loss, format_table, held_out_files, mean_predictor_loss
from tests.demo.conftest import REPO, tool_main
from tests.engine.toy_data import register_toy_dataset, toy_cfg
from videoconvmae.data.synthetic import make_synthetic_video_dataset, render_motion_clip
from videoconvmae.modality import SYNTHETIC_RECIPE

REQUIRED_KEYS = ("pretrain_loss_first", "pretrain_loss_last", "pretrained_top1", "scratch_top1", "seconds")
# Smallest budget: 8 training clips (one step), one epoch per stage, one view per test video.
SHORT = ["SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_EPOCHS", "0.0",
         "TEST.NUM_ENSEMBLE_VIEWS", "1", "TEST.NUM_SPATIAL_CROPS", "1", "DATA_LOADER.NUM_WORKERS", "0",
         "MODEL.EMBED_DIM", "[16, 32, 64]", "MODEL.DEPTH", "[1, 1, 1]", "MODEL.NUM_HEADS", "2",
         "MODEL.DECODER_EMBED_DIM", "32", "MODEL.DECODER_NUM_HEADS", "2"]


STAGE_START = re.compile(r"demo \[(\d)/5\] .* -> ")
PROGRESS_EVERY_S = 0.3  # --progress-every of the short demo


def _seconds(line: str) -> float:
    """The time of a console log line ``[YYYY-MM-DD HH:MM:SS,mmm LEVEL name] ...``."""
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def assert_progress_in_every_stage(console: List[str], log_txt: Path) -> None:
    """A progress line with an ETA on the console in each of the 5 stages, those of a stage at least
    ``PROGRESS_EVERY_S`` apart; log.txt has at least as many."""
    starts = [i for i, line in enumerate(console) if STAGE_START.search(line)]
    assert [STAGE_START.search(console[i]).group(1) for i in starts] == ["1", "2", "3", "4", "5"], console
    progress = [line for line in console if " eta " in line]
    for start, end in zip(starts, starts[1:] + [len(console)]):
        in_stage = [line for line in console[start + 1:end] if " eta " in line]
        assert in_stage, f"no progress after {console[start]}"
        # The first line of a stage shows at once; the next ones at most one per PROGRESS_EVERY_S.
        times = list(map(_seconds, in_stage))
        assert all(b - a >= PROGRESS_EVERY_S - 0.001 for a, b in zip(times, times[1:])), in_stage
    assert len([line for line in log_txt.read_text().splitlines() if " eta " in line]) >= len(progress)


def assert_last_lines_give_existing_paths(console: List[str], out: Path) -> None:
    """``results: PATH``, ``pictures: PATH, ...``, ``logs: PATH, ...``: every path exists."""
    last = {line.split(": ", 1)[0]: line.split(": ", 1)[1].split(", ") for line in console
            if line.startswith(("results: ", "pictures: ", "logs: "))}
    assert set(last) == {"results", "pictures", "logs"}, console[-5:]
    for path in [path for paths in last.values() for path in paths]:
        assert Path(path).exists(), path
    assert str(out / "reconstruction.png") in last["pictures"] and str(out / "log.txt") in last["logs"]


@pytest.mark.slow
def test_short_demo_writes_results_and_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    recipe = {**SYNTHETIC_RECIPE, "clips_per_class": (2, 1, 1)}  # the demo's clips, fewer of them
    make_synthetic_video_dataset(str(out / "data"), formats=("kinetics",), **recipe)
    returned = tool_main("demo")(["--output-dir", str(out), "--progress-every", str(PROGRESS_EVERY_S), *SHORT])
    console = capsys.readouterr().out.splitlines()
    assert_progress_in_every_stage(console, out / "log.txt")
    assert_last_lines_give_existing_paths(console, out)

    results = json.loads((out / RESULTS_FILE).read_text())
    assert results == returned
    for key in REQUIRED_KEYS:
        assert isinstance(results[key], float) and math.isfinite(results[key]), key
    assert 0 <= results["pretrained_top1"] <= 100 and 0 <= results["scratch_top1"] <= 100
    assert results["margin"] == pytest.approx(results["pretrained_top1"] - results["scratch_top1"])
    assert results["pretrain_loss_first"] == results["pretrain_loss_last"] > 0  # one epoch
    assert results["num_test_videos"] == 4 and results["seconds"] > 0
    assert set(results["stage_seconds"]) == {"pretrain", "finetune_pretrained", "test_pretrained",
                                             "finetune_scratch", "test_scratch", "pictures"}
    assert results["seconds"] == pytest.approx(sum(results["stage_seconds"].values()))

    first_timings = results["stage_seconds"]
    again = tool_main("demo")(["--output-dir", str(out), *SHORT])  # a rerun finds every stage finished
    for stage in ("pretrain", "finetune_pretrained", "finetune_scratch"):
        assert again["stage_seconds"][stage] == first_timings[stage]  # the real run's timings are kept
    assert {k: again[k] for k in REQUIRED_KEYS[:4]} == {k: results[k] for k in REQUIRED_KEYS[:4]}

    # 8 frames of 80x80 by 4 panels, 2-pixel padding, a 96-pixel row-label column, a 14-pixel caption line
    # (the held-out clip's class) and a 14-pixel frame-number line
    one_clip = (96 + 8 * 80 + 7 * 2, 14 + 14 + 4 * 80 + 3 * 2)
    with Image.open(out / "reconstruction.png") as png:  # one held-out clip per class, 8-pixel gaps
        assert png.format == "PNG" and png.size == (one_clip[0], 4 * one_clip[1] + 3 * 8)
    with Image.open(out / "reconstruction.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 8 and gif.size == (4 * 80, 4 * 80)  # one GIF frame per clip frame
    test_cfg = load_config(str(REPO / "configs" / "demo" / "video_finetune.yaml"),
                           ["DATA.PATH_TO_DATA_DIR", str(out / "data" / "kinetics")])
    assert [(p.parent.name, label) for p, label in held_out_files(test_cfg)] == [
        (f"direction_{d:03d}", label) for label, d in enumerate((0, 90, 180, 270))]
    with Image.open(out / "pretrain_curve.png") as curve:  # one loss axis: 5 x (0.8 + 2.4) in at 100 dpi
        assert curve.format == "PNG" and curve.size == (500, 320)
    with Image.open(out / "finetune_curve.png") as curve:
        assert curve.format == "PNG"
    table = capsys.readouterr().out
    assert "top-1, finetuned from pretraining" in table and "margin" in table


def test_first_and_last_loss_read_the_json_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"epoch": e, "train_loss": 1.0 / e}) for e in (1, 2, 4)) + "\n")
    assert first_and_last_loss(log) == (1.0, 0.25)
    log.write_text(json.dumps({"epoch": 1}) + "\n")
    with pytest.raises(ValueError, match="no train_loss"):
        first_and_last_loss(log)


def test_table_shows_both_accuracies_and_the_margin():
    table = format_table({"pretrain_loss_first": 1.0, "pretrain_loss_last": 0.5, "mean_predictor_loss": 0.9,
                          "pretrained_top1": 90.0,
                          "scratch_top1": 60.0, "margin": 30.0, "chance_top1": 25.0, "seconds": 125.0,
                          "seed": 0, "num_test_videos": 64, "views_per_video": 6, "pretrain_epochs": 20,
                          "finetune_epochs": 8})
    assert "1.000 -> 0.500 (mean predictor: 0.900)" in table and "90.0 %" in table and "60.0 %" in table
    assert "+30.0 points" in table and "2 min 05 s" in table


@pytest.mark.parametrize("background", ["blocks", "smooth"])
def test_one_frame_cannot_tell_the_class(background):
    """Same seed, different classes: identical first frames, different motion afterwards."""
    clips = [render_motion_clip(label=label, num_classes=4, num_frames=6, height=40, width=56,
                                rng=np.random.default_rng(7), background=background) for label in range(4)]
    for clip in clips[1:]:
        assert np.array_equal(clip[0], clips[0][0])
        assert not np.array_equal(clip[-1], clips[0][-1])
    with pytest.raises(ValueError, match="background"):
        render_motion_clip(label=0, num_classes=4, num_frames=2, height=40, width=56,
                           rng=np.random.default_rng(0), background="stripes")


def test_mean_predictor_loss_is_the_per_channel_pixel_variance(tmp_path):
    register_toy_dataset()
    cfg = toy_cfg("video_pretrain", tmp_path, "MAE.NORM_PIX_LOSS", "False")
    torch.manual_seed(5)
    level = mean_predictor_loss(cfg, batches=2)
    torch.manual_seed(5)  # the toy items draw their pixels in loading order: draw them again
    dataset = build_dataset(cfg, "pretrain")
    clips = torch.stack([dataset[i]["video"] for i in range(2 * cfg.TRAIN.BATCH_SIZE)])  # (N, C, T, H, W)
    expected = sum(clips[:, c].var(unbiased=False).item() for c in range(3)) / 3
    assert level == pytest.approx(expected, rel=1e-5)
    assert mean_predictor_loss(toy_cfg("video_pretrain", tmp_path, "MAE.NORM_PIX_LOSS", "True")) == 1.0
