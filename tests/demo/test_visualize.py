"""tools/visualize.py: reconstruction pictures of a pretraining checkpoint on a generated video
or image, and the training curve of a JSON-lines log."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from common.checkpoint import CheckpointError, atomic_save
from common.config import load_config
from common.engine.builders import build_model
from common.engine.reconstruct import write_finetune_comparison, write_reconstruction
from tests.demo.conftest import REPO, tool_main
from videoconvmae.data.synthetic import render_motion_clip, write_video

TINY = ["MODEL.EMBED_DIM", "[16, 32, 64]", "MODEL.DEPTH", "[1, 1, 1]", "MODEL.NUM_HEADS", "2",
        "MODEL.DECODER_EMBED_DIM", "32", "MODEL.DECODER_NUM_HEADS", "2"]
CROP, FRAMES = 32, 4
LABELS, LINE = 96, 14  # picture layout: row-label column width, height of a text line


def save_checkpoint(path, recipe, overrides, *, pretraining=True, with_cfg=True):
    """A training-style checkpoint (weights + resolved config) of the tiny model of ``recipe``."""
    cfg = load_config(str(REPO / "configs" / "demo" / recipe), TINY + overrides)
    model = build_model(cfg, pretraining=pretraining, crop_size=cfg.DATA.TRAIN_CROP_SIZE)
    atomic_save({"model": model.state_dict(), **({"cfg": cfg.dump()} if with_cfg else {})}, path)
    return path


@pytest.fixture
def video_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "checkpoint-last.pth", "video_pretrain.yaml",
                           ["DATA.TRAIN_CROP_SIZE", str(CROP), "DATA.NUM_FRAMES", str(FRAMES), "DATA.SAMPLING_RATE", "2"])


@pytest.fixture
def video_file(tmp_path):
    frames = render_motion_clip(label=1, num_classes=4, num_frames=12, height=40, width=48,
                                rng=np.random.default_rng(0))
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=10)
    return path


def test_video_grid_and_gif(tmp_path, video_checkpoint, video_file):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "train_loss": 1.0 / e}) + "\n" for e in (1, 2, 3)))
    out = tmp_path / "pictures"
    written = tool_main("visualize")(["--checkpoint", str(video_checkpoint), "--input", str(video_file),
                                      "--log", str(log), "--output-dir", str(out)])
    assert [p.name for p in written] == ["clip_reconstruction.png", "clip_reconstruction.gif", "training_curve.png"]
    pad = 2
    with Image.open(out / "clip_reconstruction.png") as png:  # file name, frame numbers, 4 labelled panel rows
        assert png.size == (LABELS + FRAMES * (CROP + pad) - pad, 2 * LINE + 4 * (CROP + pad) - pad)
    with Image.open(out / "clip_reconstruction.gif") as gif:  # the 4 panels side by side, per frame
        assert gif.n_frames == FRAMES and gif.size == (4 * CROP, CROP)
    with Image.open(out / "training_curve.png") as curve:  # one loss axis: 5 x (0.8 + 2.4) in at 100 dpi
        assert curve.format == "PNG" and curve.size == (500, 320)


def test_image_grid(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "image.pth", "image_pretrain.yaml", ["DATA.TRAIN_CROP_SIZE", str(CROP)])
    image = tmp_path / "stripes.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    written = write_reconstruction(checkpoint, image, tmp_path, name="image")
    assert [p.name for p in written] == ["image.png"]
    with Image.open(written[0]) as png:  # one frame: no frame numbers; no caption
        assert png.size == (LABELS + CROP, 4 * (CROP + 2) - 2)
    captioned, = write_reconstruction(checkpoint, image, tmp_path, name="captioned", captions=["class 'stripes'"])
    with Image.open(captioned) as png:
        assert png.size == (LABELS + CROP, LINE + 4 * (CROP + 2) - 2)
    with pytest.raises(ValueError, match="2 captions for 1 samples"):
        write_reconstruction(checkpoint, image, tmp_path, captions=["a", "b"])


def test_config_from_file_when_the_checkpoint_has_none(tmp_path, video_file):
    overrides = ["DATA.TRAIN_CROP_SIZE", str(CROP), "DATA.NUM_FRAMES", str(FRAMES)]
    bare = save_checkpoint(tmp_path / "bare.pth", "video_pretrain.yaml", overrides, with_cfg=False)
    with pytest.raises(CheckpointError, match="stores no config"):
        write_reconstruction(bare, video_file, tmp_path)
    cfg = load_config(str(REPO / "configs" / "demo" / "video_pretrain.yaml"), TINY + overrides)
    assert [p.suffix for p in write_reconstruction(bare, video_file, tmp_path, cfg=cfg)] == [".png", ".gif"]


def test_refuses_classifier_checkpoints_and_the_wrong_media(tmp_path, video_checkpoint, video_file):
    classifier = save_checkpoint(tmp_path / "classifier.pth", "video_finetune.yaml",
                                 ["DATA.TRAIN_CROP_SIZE", str(CROP), "DATA.NUM_FRAMES", str(FRAMES)], pretraining=False)
    with pytest.raises(CheckpointError, match="not a pretraining"):
        write_reconstruction(classifier, video_file, tmp_path)
    image = tmp_path / "frame.png"
    Image.new("RGB", (40, 40)).save(image)
    with pytest.raises(ValueError, match="reads video files"):
        write_reconstruction(video_checkpoint, image, tmp_path)


def test_finetune_comparison_file(tmp_path, caplog):
    logs = {}
    for name, top1 in (("pretrained", (50.0, 100.0)), ("scratch", (25.0, 37.5))):
        logs[name] = tmp_path / name / "log.jsonl"
        logs[name].parent.mkdir()
        logs[name].write_text("".join(json.dumps({"epoch": e + 1, "val_top1": t}) + "\n" for e, t in enumerate(top1)))
    with caplog.at_level("INFO"):
        path = write_finetune_comparison(logs, tmp_path / "pictures" / "finetune_comparison.png")
    assert path == tmp_path / "pictures" / "finetune_comparison.png" and "pretrained, scratch" in caplog.text
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (500, 320)
