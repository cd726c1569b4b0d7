"""Preemption and Ctrl-C: SIGTERM / SIGUSR1 / SIGUSR2 (Slurm's and submitit's) and SIGINT ask the
training loop to checkpoint and stop at a step boundary.

The handler only records the signal; the loop polls ``requested`` after each optimizer step
(agreeing across ranks), saves ``checkpoint-last.pth`` and calls ``finish``, which hands the
signal on to the handler that was installed before (submitit's requeue handler, for one) and
exits: code 0 after a preemption signal, 130 after Ctrl-C. A second Ctrl-C stops at once.

Slurm signals every process of a job step, DataLoader workers included, and Ctrl-C reaches the
whole foreground process group: ``ignore_in_workers`` (the loaders' ``worker_init_fn``) makes the
workers ignore these signals, so they keep serving the main process until it has checkpointed.
"""
from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Callable, Dict, Optional, Sequence, Union

logger = logging.getLogger(__name__)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
DEFAULT_SIGNALS = PREEMPTION_SIGNALS + (signal.SIGINT,)
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT  # what shells report for a Ctrl-C
Handler = Union[Callable[[int, Optional[FrameType]], None], int, None]


def ignore_in_workers(worker_id: int) -> None:
    """``worker_init_fn`` of the engine's DataLoaders: the worker ignores the signals meant for the
    main process (which stops the workers itself once it has checkpointed)."""
    for sig in DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class PreemptionHandler:
    """Records preemption signals and Ctrl-C; ``install``/``uninstall`` around a training run."""

    def __init__(self, signals: Sequence[int] = DEFAULT_SIGNALS):
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous: Dict[int, Handler] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def install(self) -> "PreemptionHandler":
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._record)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def finish(self) -> None:
        """After the checkpoint: run the previous handler of a preemption signal (if any), then
        exit (0 after a preemption signal, ``INTERRUPTED_EXIT_CODE`` after Ctrl-C)."""
        sig = self.received
        previous = self._previous.get(sig) if sig is not None else None
        self.uninstall()
        if sig == signal.SIGINT:
            raise SystemExit(INTERRUPTED_EXIT_CODE)
        if callable(previous):
            previous(sig, None)
        raise SystemExit(0)

    def _record(self, signum: int, frame: Optional[FrameType]) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            logger.warning("second Ctrl-C: stopping at once, without a checkpoint")
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            logger.warning("Ctrl-C: checkpointing at the end of this step, then stopping (Ctrl-C again to stop at once)")
        else:
            logger.warning("received %s: checkpointing at the end of this step", signal.Signals(signum).name)
        self.received = signum
