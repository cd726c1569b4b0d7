"""Run a tool, pausing it at a chosen point so that a test can kill it there.

``python paused_tool.py --pause-at step:N|save:N|hold:N|write:NAME:N --marker PATH -- TOOL.py [ARGS]`` runs
TOOL.py unchanged except that after the N-th optimizer step (``step:N``), or inside the N-th
checkpoint write after the data reached the temp file and before the rename (``save:N``), it
creates ``PATH`` and sleeps until it is killed. ``hold:N`` pauses after the N-th step too, but
only until the test deletes ``PATH`` (after signalling the run), then the run goes on.
``write:NAME:N`` holds the same way inside the first ``write`` of the N-th atomic write of the
file ``NAME`` (while ``torch.save`` is writing it, as a signal can land). ``--pause-at`` and
``--marker`` may be given several times, one marker per pause.
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


class HeldFile:
    """A binary file whose first ``write`` holds (``hold``) before writing."""

    def __init__(self, file, marker: Path):
        self._file, self._marker, self._held = file, marker, False

    def write(self, data):
        if not self._held:
            self._held = True
            hold(self._marker)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)


def hold_in_write(name: str, count: int, marker: Path) -> None:
    """Hold inside the first write of the ``count``-th atomic write of the file ``name`` (its temp
    file is opened through ``os.fdopen`` by ``common.files.atomic_write``)."""
    real_fdopen = os.fdopen
    calls = {"n": 0}

    def fdopen(fd, mode="r", *args, **kwargs):
        file = real_fdopen(fd, mode, *args, **kwargs)
        if mode != "wb" or f"/.{name}." not in os.readlink(f"/proc/self/fd/{fd}"):
            return file
        calls["n"] += 1
        return HeldFile(file, marker) if calls["n"] == count else file

    os.fdopen = fdopen


def install_pause(spec: str, marker: Path) -> None:
    kind, *target, count = spec.split(":")
    if kind == "write":
        hold_in_write(target[0], int(count), marker)
        return
    owner, name = {"step": (trainer, "_optimizer_step"), "save": (torch, "save"), "hold": (trainer, "_optimizer_step")}[kind]
    pause_after_call(owner, name, int(count), marker, pause=hold if kind == "hold" else pause_forever)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pause-at", required=True, action="append", help="step:N, save:N, hold:N or write:NAME:N")
    parser.add_argument("--marker", required=True, action="append", type=Path)
    parser.add_argument("tool_and_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    for spec, marker in zip(args.pause_at, args.marker, strict=True):
        install_pause(spec, marker)
    rest = args.tool_and_args[1:] if args.tool_and_args[:1] == ["--"] else args.tool_and_args
    tool, *tool_args = rest
    sys.argv = [tool, *tool_args]
    runpy.run_path(tool, run_name="__main__")


if __name__ == "__main__":
    main()
