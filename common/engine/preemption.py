"""Preemption: SIGTERM / SIGUSR1 / SIGUSR2 (Slurm's and submitit's) ask the training loop to checkpoint and stop at a step boundary.

The handler only records the signal; the loop polls ``requested`` after each optimizer step
(agreeing across ranks), saves ``checkpoint-last.pth`` and calls ``finish``, which hands the
signal on to the handler that was installed before (submitit's requeue handler, for one).
"""
from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Callable, Dict, Optional, Sequence, Union

logger = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
Handler = Union[Callable[[int, Optional[FrameType]], None], int, None]


class PreemptionHandler:
    """Records preemption signals; ``install``/``uninstall`` around a training run."""

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
        """After the checkpoint: run the previous handler of the signal (if any), then exit."""
        sig = self.received
        previous = self._previous.get(sig) if sig is not None else None
        self.uninstall()
        if callable(previous):
            previous(sig, None)
        raise SystemExit(0)

    def _record(self, signum: int, frame: Optional[FrameType]) -> None:
        logger.warning("received %s: checkpointing at the end of this step", signal.Signals(signum).name)
        self.received = signum
