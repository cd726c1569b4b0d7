"""Helpers of the robustness tests: tiny pretraining runs in subprocesses, polling, log and checkpoint readers."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import pytest
import torch

from common.checkpoint import safe_load
from common.engine import trainer
from common.engine.launch import JobRunner
from common.files import is_engine_temp
from tests.engine.toy_data import DEMO, real_overrides

REPO = Path(__file__).resolve().parents[2]
PRETRAIN_TOOL = REPO / "tools" / "pretrain.py"
PAUSED_TOOL = Path(__file__).with_name("paused_tool.py")
RECIPE = DEMO / "video_pretrain.yaml"
STEPS_PER_EPOCH = 3  # 12 generated training clips, TRAIN.BATCH_SIZE 4
WAIT_S = 180.0  # upper bound of every wait: a stuck run fails the test instead of hanging it


def pretrain_args(output_dir: Path, data_dir: Path, *extra: str) -> List[str]:
    """``tools/pretrain.py`` arguments: the tiny video recipe on generated mp4s, 3 epochs, a
    progress line per step, deterministic."""
    return ["--cfg", str(RECIPE), *real_overrides(output_dir, data_dir, "SOLVER.MAX_EPOCH", "3", "LOG.PERIOD", "1",
                                                  "DETERMINISTIC", "True", *extra)]


def start_tool(args: List[str], log: Path, *, pause_at: Union[str, Sequence[str], None] = None,
               marker: Union[Path, Sequence[Path], None] = None, tool: Path = PRETRAIN_TOOL,
               own_group: bool = False) -> subprocess.Popen:
    """Start ``python tool args`` (through ``paused_tool.py`` when ``pause_at`` is given: one pause,
    or a list of pauses with one marker each); its output goes to ``log``. ``own_group``: in a new
    process group (``os.killpg(proc.pid, sig)`` then signals the run and its data workers, as Slurm
    and Ctrl-C do, and not the tests)."""
    pauses = [pause_at] if isinstance(pause_at, str) else list(pause_at or [])
    markers = [marker] if isinstance(marker, (str, Path)) else list(marker or [])
    wrapper = [str(PAUSED_TOOL)]
    for pause, mark in zip(pauses, markers, strict=True):
        wrapper += ["--pause-at", pause, "--marker", str(mark)]
    wrapper = [*wrapper, "--"] if pauses else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *wrapper, str(tool), *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=own_group)


def run_tool(args: List[str], log: Path) -> int:
    """Run ``tools/pretrain.py args`` to the end; returns its exit code."""
    return start_tool(args, log).wait(timeout=WAIT_S)


def wait_for(condition: Callable[[], bool], what: str, proc: Optional[subprocess.Popen] = None) -> None:
    """Poll ``condition`` until it holds; fail (naming ``what``) if ``proc`` exits first or after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def log_has(output_dir: Path, text: str) -> Callable[[], bool]:
    """A condition: ``OUTPUT_DIR/log.txt`` contains ``text``."""
    path = output_dir / "log.txt"
    return lambda: path.is_file() and text in path.read_text()


def json_records(output_dir: Path) -> List[dict]:
    """Every record of ``OUTPUT_DIR/log.jsonl``: the epochs' and the events' (rewinds)."""
    return [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]


def epoch_losses(output_dir: Path) -> Dict[int, float]:
    """``{epoch: train_loss}`` from ``log.jsonl`` (a later line for the same epoch wins; events skipped)."""
    return {r["epoch"]: r["train_loss"] for r in json_records(output_dir) if "train_loss" in r}


def rewind_records(output_dir: Path) -> List[dict]:
    """The rewind records of ``log.jsonl``."""
    return [r for r in json_records(output_dir) if r.get("event") == "rewind"]


def output_lines(path: Path) -> List[str]:
    """The non-empty lines a tool printed (its captured stdout and stderr)."""
    return [line for line in path.read_text().splitlines() if line.strip()]


def load_all_checkpoints(output_dir: Path) -> Dict[str, dict]:
    """Every ``checkpoint-*.pth`` in ``output_dir``, loaded with ``safe_load`` (which raises on a corrupt one)."""
    return {Path(p).name: safe_load(p) for p in sorted(glob.glob(str(output_dir / "checkpoint-*.pth")))}


def temp_files(output_dir: Path) -> List[str]:
    """Temp files of the engine's atomic writer left in ``output_dir``."""
    return sorted(p.name for p in output_dir.iterdir() if is_engine_temp(p.name))


def same_weights(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    """True when two state dicts hold exactly equal tensors under the same keys."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class PausedFirstAttempt(JobRunner):
    """A submitit job whose first attempt stops after its first step until a preemption signal
    arrives (the local executor's timeout signal); ``checkpoint`` requeues a plain ``JobRunner``."""

    def __call__(self):
        def wait_for_signal(preemption) -> bool:
            while preemption is not None and not preemption.requested:
                time.sleep(0.05)
            return True

        trainer._preempt_requested = wait_for_signal
        return super().__call__()


@contextmanager
def small_filesystem(where: Path, size_bytes: int) -> Iterator[Path]:
    """A real tmpfs of ``size_bytes`` mounted at ``where`` for the test (needs the right to mount,
    as root in a container); the test is skipped where it cannot be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                             capture_output=True, text=True) if shutil.which("mount") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() if mounted else 'no mount command'}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_filesystem(folder: Path, leave_bytes: int) -> Path:
    """Write a filler file in ``folder`` that leaves about ``leave_bytes`` free on its filesystem."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler
