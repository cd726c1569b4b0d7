import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videoconvmae.data.decoders import build_decoder
from videoconvmae.data.synthetic import _block_texture, direction_degrees, make_synthetic_video_dataset, render_motion_clip

REPO = Path(__file__).resolve().parents[2]


def _shift(clip, background):
    """(dy, dx) that best moves the square of frame 0 onto the square of the last frame."""
    first, last = ((clip[k] != background).any(-1) for k in (0, -1))
    shifts = [(dy, dx) for dy in range(-15, 16) for dx in range(-15, 16)]
    return max(shifts, key=lambda s: (np.roll(first, s, axis=(0, 1)) & last).sum())


def test_class_is_motion_one_frame_cannot_tell():
    clips = [render_motion_clip(label=k, num_classes=4, num_frames=6, height=96, width=128, rng=np.random.default_rng(5)) for k in range(4)]
    assert all(np.array_equal(clip[0], clips[0][0]) for clip in clips)  # same first frame for every class
    background = _block_texture(np.random.default_rng(5), 96, 128, 4, 0, 160)  # drawn first, as in the clip
    (dy0, dx0), (dy1, dx1), (dy2, dx2), (dy3, dx3) = (_shift(clip, background) for clip in clips)
    assert dx0 > 3 and dy0 == 0  # right
    assert dy1 < -3 and dx1 == 0  # up (rows grow downwards)
    assert dx2 < -3 and dy2 == 0 and dy3 > 3 and dx3 == 0  # left, down
    assert [direction_degrees(k, 8) for k in (0, 2, 5)] == [0, 90, 225]


def test_dataset_files_are_real_decodable_and_deterministic(tmp_path):
    kwargs = dict(num_classes=2, clips_per_class=(1, 1, 1), num_frames=8, height=32, width=48, seed=7)
    first = make_synthetic_video_dataset(str(tmp_path / "a"), **kwargs)
    make_synthetic_video_dataset(str(tmp_path / "b"), **kwargs)
    assert sorted(p.name for p in first["kinetics"].iterdir()) == ["classids.json", "test", "test.csv", "train", "train.csv",
                                                                   "val", "val.csv"]
    assert (first["kinetics"] / "train.csv").read_text() == "train/direction_000/00000.mp4 0\ntrain/direction_180/00001.mp4 1\n"
    assert sorted(p.name for p in first["ssv2"].glob("*.json")) == ["classids.json", "something-something-v2-labels.json",
                                                                    "train.json", "validation.json"]
    # PySlowFast's classids.json: the class folder names (kinetics), the label templates (ssv2, as its labels json).
    assert json.loads((first["kinetics"] / "classids.json").read_text()) == {"direction_000": 0, "direction_180": 1}
    ssv2_labels = json.loads((first["ssv2"] / "something-something-v2-labels.json").read_text())
    assert json.loads((first["ssv2"] / "classids.json").read_text()) == {k: int(v) for k, v in ssv2_labels.items()}
    assert list(ssv2_labels) == ["Moving something towards 0 degrees", "Moving something towards 180 degrees"]
    decode = build_decoder("pyav").decode
    for relative in ["kinetics/train/direction_180/00001.mp4", "ssv2/3.webm"]:
        a = decode(str(tmp_path / "a" / relative), lambda n: [torch.arange(n)])
        b = decode(str(tmp_path / "b" / relative), lambda n: [torch.arange(n)])
        assert a.num_frames == 8 and a.frames.shape == (8, 32, 48, 3) and torch.equal(a.frames, b.frames)


def test_cli_help_and_run(tmp_path):
    script = str(REPO / "tools" / "make_synthetic_dataset.py")
    assert "--clips-per-class" in subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, check=True).stdout
    subprocess.run(
        [sys.executable, script, str(tmp_path), "--formats", "ssv2", "images", "--clips-per-class", "1", "1", "1", "--frames", "4", "--width", "32", "--height", "32"],
        check=True, capture_output=True, cwd=REPO,
    )
    assert len(list((tmp_path / "ssv2").glob("*.webm"))) == 8 and (tmp_path / "images" / "val").is_dir() and not (tmp_path / "kinetics").exists()


def test_a_plain_square_is_one_colour_of_the_asked_size():
    clip = render_motion_clip(label=0, num_classes=4, num_frames=3, height=40, width=56, rng=np.random.default_rng(2),
                              background="smooth", square="plain", square_size=0.4)
    bright = clip[0].max(-1) >= 120  # the smooth background stays below 72, the square at 120 or above
    rows, cols = np.nonzero(bright)
    assert bright.sum() == 16 * 16 and len(set(rows)) == len(set(cols)) == 16  # side 0.4 * 40 (it may wrap)
    assert len(np.unique(clip[0][bright], axis=0)) == 1


def test_a_bad_style_is_refused_before_any_file_is_written(tmp_path):
    for style, match in (({"square": "round"}, "square must be one of"), ({"square_size": 1.5}, "fraction of the frame height"),
                         ({"background": "stripes"}, "background must be one of")):
        with pytest.raises(ValueError, match=match):
            make_synthetic_video_dataset(str(tmp_path / "out"), **style)
    assert not (tmp_path / "out").exists()
