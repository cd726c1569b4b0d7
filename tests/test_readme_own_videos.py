"""The README's "Your own videos" walkthrough runs as written: its commands (folder -> prepare ->
pretrain -> finetune -> test -> predict) are taken from the README section and run, in order, on
generated videos in class folders under the README's folder name (a space and a non-ASCII letter),
with only size and epoch overrides appended so that they take a minute on a CPU."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

from videoconvmae.data.synthetic import render_motion_clip, write_video

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Your own videos"
STEPS = ["prepare_videos", "pretrain", "finetune", "test", "predict"]
SMALL = ["SOLVER.MAX_EPOCH", "1", "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2", "DATA.NUM_FRAMES", "4",
         "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA_LOADER.NUM_WORKERS", "0"]
# Appended to each step: sizes and epochs only (the test and predict steps use what the run remembers).
APPENDED = {"prepare_videos": ["--workers", "1", "--no-progress"], "pretrain": SMALL, "finetune": SMALL,
            "test": [], "predict": []}
CLASSES = ["vers la droite", "vers la gauche"]  # class folders: the motion's direction
VIDEOS_PER_CLASS = 6
TIMEOUT_S = 300


def section(markdown: str, heading: str) -> str:
    """The text of the level-2 section ``heading`` (up to the next level-2 heading)."""
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading) + 1:]
    following = re.search(r"^## ", rest, re.MULTILINE)
    return rest[:following.start()] if following else rest


def tool_commands(text: str) -> List[List[str]]:
    """The ``python tools/...`` command lines of ``text`` (code blocks), each split as a shell would."""
    return [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith("python tools/")]


def step_of(command: List[str]) -> str:
    return Path(command[1]).stem


def test_the_section_gives_the_whole_way_in_order():
    commands = tool_commands(section((ROOT / "README.md").read_text(encoding="utf-8"), SECTION))
    assert [step_of(c) for c in commands] == STEPS
    assert tool_commands("text\n    python tools/a.py 'x y' Z\n```\npython tools/b.py\n```\n") == [
        ["python", "tools/a.py", "x y", "Z"], ["python", "tools/b.py"]]


def _write_class_folders(folder: Path) -> None:
    number = 0
    for label, name in enumerate(CLASSES):
        for k in range(VIDEOS_PER_CLASS):
            frames = render_motion_clip(label=label, num_classes=len(CLASSES), num_frames=24, height=48, width=64,
                                        rng=np.random.default_rng(number), background="smooth", square="plain",
                                        square_size=0.4)
            write_video(folder / name / f"clip {k}.mp4", frames, fps=30)
            number += 1


@pytest.mark.slow
def test_the_readme_walkthrough_runs_on_a_folder_of_videos(tmp_path):
    commands = tool_commands(section((ROOT / "README.md").read_text(encoding="utf-8"), SECTION))
    videos = Path(commands[0][2])  # the folder the README starts from
    assert " " in str(videos) and not str(videos).isascii()
    work = tmp_path / "work"
    work.mkdir()
    for name in ("tools", "configs"):  # the commands run from the repository root
        os.symlink(ROOT / name, work / name)
    _write_class_folders(work / videos)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for command in commands:
        step = step_of(command)
        result = subprocess.run([sys.executable, *command[1:], *APPENDED[step]], cwd=work, env=env,
                                capture_output=True, text=True, timeout=TIMEOUT_S)
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    prepared = Path(commands[1][commands[1].index("DATA.PATH_TO_DATA_DIR") + 1])
    assert json.loads((work / prepared / "classids.json").read_text(encoding="utf-8")) == {
        name: k for k, name in enumerate(CLASSES)}
    finetune_run = work / commands[2][commands[2].index("OUTPUT_DIR") + 1]
    assert json.loads((finetune_run / "test_results.json").read_text())["num_videos"] == 2
    output = work / commands[4][commands[4].index("--output") + 1]
    predictions = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(predictions) == len(CLASSES) * VIDEOS_PER_CLASS
    assert all(p["error"] == "" and p["topk"][0]["name"] in CLASSES for p in predictions)
