"""Tiny trained runs and media for the inference tests (predict, features)."""
from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from common.engine.jobs import run_job
from tests.engine.toy_data import real_cfg
from videoconvmae.data.synthetic import render_motion_clip, write_video

REPO = Path(__file__).resolve().parents[2]
NO_WORKERS = {"DATA_LOADER.NUM_WORKERS": 0}


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, video_data) -> Dict[str, Path]:
    """A 1-epoch pretraining run ("pre"), a finetuning run from it ("ft") and its multi-view test
    (predictions.csv), on the engine tests' generated mp4 dataset (import the fixture to use it)."""
    root, data = tmp_path_factory.mktemp("runs"), video_data
    pre, ft = root / "pre", root / "ft"
    run_job("pretrain", real_cfg("video_pretrain", pre, data))
    run_job("finetune", real_cfg("video_finetune", ft, data, "TRAIN.CHECKPOINT_FILE_PATH", str(pre / "checkpoint-last.pth")))
    run_job("test", real_cfg("video_finetune", ft, data))
    return {"pre": pre, "ft": ft}


def write_motion_video(path: Path, *, num_frames: int, label: int = 0, seed: int = 0) -> Path:
    """A real encoded clip (.mp4 H.264 or .webm VP9 by suffix) of the motion dataset's kind."""
    frames = render_motion_clip(label=label, num_classes=3, num_frames=num_frames, height=48, width=64,
                                rng=np.random.default_rng(seed), background="smooth", square="plain", square_size=0.4)
    write_video(path, frames, fps=30)
    return path


def tool_main(name: str):
    """The ``main`` of ``tools/<name>.py``."""
    return runpy.run_path(str(REPO / "tools" / f"{name}.py"))["main"]


def tool(name: str, *argv: Any):
    """Run ``tools/<name>.py`` in this process with ``argv``; returns what its ``main`` returns."""
    return tool_main(name)([str(a) for a in argv])
