"""Process-wide settings that the entry points (tools/, benchmarks/) apply before any work, and
the set-up of the worker processes they start.

The library never applies them on import: a program that embeds it keeps its own settings.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def configure_process() -> None:
    """Apply the entry points' settings; a value the user already set wins.

    ``THP_MEM_ALLOC_ENABLE=1``: PyTorch backs CPU tensors of 2 MB and more with transparent huge
    pages (read at its first such allocation). A fresh batch of video clips then costs ~500x fewer
    page faults: the uint8 -> float normalisation of 8 clips of 16x224x224 takes 18 ms instead of
    61 ms on the 2-core CPU of docs/performance.md.
    """
    os.environ.setdefault(THP_VARIABLE, "1")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of pool workers that ``die_with_parent`` fits: each worker's parent must be
    the process that makes the pool, which ``fork`` (Linux) and ``spawn`` (elsewhere) give and
    ``forkserver`` (a default some platforms and Python versions choose) does not: its workers are
    children of the fork server."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def die_with_parent(parent_pid: int) -> None:
    """Initializer of a pool worker started by ``parent_pid`` (its parent: see ``worker_context``):
    the worker ends when that process dies, even by SIGKILL, instead of waiting forever for work that
    will never come (a pool's workers share its queues, so none of them sees the parent go). On Linux the kernel sends the
    worker SIGKILL (``prctl(PR_SET_PDEATHSIG)``); elsewhere a thread checks the parent every second."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)
