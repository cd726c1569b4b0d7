"""Fixtures: real generated media (mp4/webm via PyAV, jpg via PIL) and damaged files; the prepare tool."""
import runpy
from pathlib import Path
from typing import Dict, Tuple

import av
import numpy as np
import pytest
from fvcore.common.config import CfgNode

from common.data import add_data_config
from videoconvmae.data.synthetic import make_synthetic_video_dataset, render_motion_clip

NUM_CLASSES = 4
NUM_FRAMES = 40  # frames of each generated clip


@pytest.fixture(scope="session")
def video_data(tmp_path_factory) -> Dict[str, Path]:
    """Small synthetic K400-style (mp4 + csv) and SSV2-style (webm + json) datasets."""
    root = tmp_path_factory.mktemp("videos")
    return make_synthetic_video_dataset(
        str(root), num_classes=NUM_CLASSES, clips_per_class=(2, 1, 1), num_frames=NUM_FRAMES, height=48, width=64, seed=0
    )


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    """(NUM_FRAMES, 48, 64, 3) uint8 frames of one motion clip."""
    return render_motion_clip(label=1, num_classes=NUM_CLASSES, num_frames=NUM_FRAMES, height=48, width=64, rng=np.random.default_rng(3))


def write_faststart_mp4(path: Path, frames: np.ndarray) -> None:
    """H.264 mp4 with the index at the front, so a truncated copy is partly decodable."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def write_audio_only(path: Path) -> None:
    """An .mp4 holding one AAC audio stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory, frames) -> Dict[str, Path]:
    """One file per bad kind (and one good faststart mp4 they were cut from)."""
    root = tmp_path_factory.mktemp("bad")
    good = root / "good.mp4"
    write_faststart_mp4(good, frames)
    data = good.read_bytes()
    files = {
        "unreadable": root / "unreadable.mp4",
        "empty": root / "empty.mp4",
        "truncated": root / "truncated.mp4",
        "audio_only": root / "audio_only.mp4",
        "missing": root / "missing.mp4",
    }
    files["unreadable"].write_bytes(b"this is not a video\n" * 200)
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(data[: len(data) // 4])
    write_audio_only(files["audio_only"])
    files["good"] = good
    return files


def _make_cfg(**data_overrides) -> CfgNode:
    cfg = CfgNode()
    add_data_config(cfg)
    cfg.MODEL = CfgNode({"NUM_CLASSES": NUM_CLASSES})
    cfg.DATA.NUM_FRAMES = 8
    cfg.DATA.SAMPLING_RATE = 2
    cfg.DATA.TRAIN_CROP_SIZE = 32
    cfg.DATA.TEST_CROP_SIZE = 32
    cfg.DATA.DECODE_TIMEOUT = 10.0
    for key, value in data_overrides.items():
        if key == "NUM_CLASSES":
            cfg.MODEL.NUM_CLASSES = value
        else:
            cfg.DATA[key] = value
    return cfg


@pytest.fixture
def make_cfg():
    """``make_cfg(**DATA overrides, NUM_CLASSES=...)``: data config for small test clips (8 frames stride 2,
    32x32 crops, 4 classes)."""
    return _make_cfg


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prepare_tool_main():
    return runpy.run_path(str(REPO / "tools" / "prepare_videos.py"), run_name="tools_prepare_videos")["main"]


@pytest.fixture
def tool(prepare_tool_main, capsys):
    """``tool(*argv)``: tools/prepare_videos.py's main in this process (one worker, no progress bar,
    short side 32 unless given) -> (exit status, what it printed on stderr)."""
    def run(*argv) -> Tuple[int, str]:
        args = [*map(str, argv), "--no-progress", "--workers", "1"]
        try:
            code = prepare_tool_main(args if "--short-side" in args else args + ["--short-side", "32"])
        except SystemExit as stop:
            code = stop.code
        return code, capsys.readouterr().err
    return run
