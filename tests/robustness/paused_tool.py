"""Run a tool, pausing it at a chosen point so that a test can kill it there.

``python paused_tool.py --pause-at step:N|save:N|hold:N --marker PATH -- TOOL.py [ARGS]`` runs
TOOL.py unchanged except that after the N-th optimizer step (``step:N``), or inside the N-th
checkpoint write after the data reached the temp file and before the rename (``save:N``), it
creates ``PATH`` and sleeps until it is killed. ``hold:N`` pauses after the N-th step too, but
only until the test deletes ``PATH`` (after signalling the run), then the run goes on.
"""
import argparse
import os
import runpy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from common.engine import trainer  # noqa: E402


def pause_forever(marker: Path) -> None:
    """Announce the pause through ``marker`` and wait to be killed."""
    marker.write_text(str(os.getpid()))
    while True:
        time.sleep(1.0)


def hold(marker: Path) -> None:
    """Announce the pause through ``marker`` and wait until it is deleted (signal handlers still run)."""
    marker.write_text(str(os.getpid()))
    while marker.exists():
        time.sleep(0.05)


def pause_after_call(owner, name: str, count: int, marker: Path, pause=pause_forever) -> None:
    """Replace ``owner.name`` so that its ``count``-th call returns, then pauses."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == count:
            for arg in args:  # torch.save(obj, file): make the written bytes visible in the file
                if hasattr(arg, "flush"):
                    arg.flush()
            pause(marker)
        return result

    setattr(owner, name, wrapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pause-at", required=True, help="step:N, save:N or hold:N")
    parser.add_argument("--marker", required=True, type=Path)
    parser.add_argument("tool_and_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    kind, count = args.pause_at.split(":")
    owner, name = {"step": (trainer, "_optimizer_step"), "save": (torch, "save"), "hold": (trainer, "_optimizer_step")}[kind]
    pause_after_call(owner, name, int(count), args.marker, pause=hold if kind == "hold" else pause_forever)
    rest = args.tool_and_args[1:] if args.tool_and_args[:1] == ["--"] else args.tool_and_args
    tool, *tool_args = rest
    sys.argv = [tool, *tool_args]
    runpy.run_path(tool, run_name="__main__")


if __name__ == "__main__":
    main()
