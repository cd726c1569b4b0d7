"""Reading ahead: the slow part of loading the next item overlaps the work on this one, within
a batch and across the batches one data worker loads in turn.

A two-phase dataset splits loading an item into ``start(key)``, which runs in the calling
thread, draws every random number the reading needs and sets the slow reading going in the
background, and ``finish(started)``, which waits for it and does the rest (augmentation).
``ReadAhead.run`` starts item i+1 before it finishes item i. A batch from
``LookaheadBatchSampler`` also names the first key of the batch the same worker loads next;
``run`` starts that one at the end and keeps it, so the next batch does not begin with a wait.
A kept item whose key is not the next batch's first is dropped: a wrong hint costs time, not
correctness.
"""
from __future__ import annotations

import os
from collections import deque
from typing import Any, Callable, Deque, Iterator, List, Optional, Protocol, Sequence, Tuple, TypeVar, runtime_checkable

from torch.utils.data import Sampler

S = TypeVar("S")
T = TypeVar("T")


@runtime_checkable
class TwoPhaseDataset(Protocol):
    """A dataset whose items load in two steps: ``finish(start(key))`` is item ``key``."""

    def start(self, key: Any) -> Any: ...

    def finish(self, started: Any) -> Any: ...


class HintedBatch(list):
    """A batch of sampler keys; ``next_first`` is the first key of the batch that the same
    worker loads next (None: unknown, or none in this epoch)."""

    next_first: Any = None


class ReadAhead:
    """Loads batches of a two-phase dataset with reading overlapped (see the module doc).

    One instance per dataset copy: each data worker holds its own. A kept item belongs to the
    process that started it (its reading thread does not survive a fork or a pickle), so it is
    neither pickled nor used in another process.
    """

    def __init__(self) -> None:
        self._kept: Optional[Tuple[int, Any, Any]] = None  # (pid, key, started) for the next batch

    def run(self, keys: Sequence[Any], start: Callable[[Any], S], finish: Callable[[S], T]) -> List[T]:
        """``[finish(start(k)) for k in keys]``, key i+1 started before key i is finished; a
        ``HintedBatch``'s ``next_first`` is started last and kept for the next call."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] != os.getpid():
            kept = None  # inherited through a fork from the process that started it
        if not keys:
            return []
        next_key = getattr(keys, "next_first", None)
        queue = list(keys) + ([next_key] if next_key is not None else [])

        def begin(key: Any) -> S:
            nonlocal kept
            if kept is not None and kept[1] == key:
                started, kept = kept[2], None
                return started
            kept = None  # a wrong hint: drop the item rather than hold its frames
            return start(key)

        results: List[T] = []
        pending = begin(queue[0])
        for position in range(len(keys)):
            current = pending
            if position + 1 < len(queue):
                pending = begin(queue[position + 1])
            results.append(finish(current))
        if next_key is not None:
            self._kept = (os.getpid(), next_key, pending)
        return results

    def __getstate__(self) -> dict:
        return {"_kept": None}  # background reads belong to the process that started them


class LookaheadBatchSampler(Sampler[List[Any]]):
    """The batches of ``batch_sampler`` as ``HintedBatch``es naming the first key of the batch
    that the same worker loads next.

    A DataLoader hands batches to its ``num_workers`` workers in turn, so worker w loads batches
    w, w + W, ...: batch b's hint is the first key of batch b + W (b + 1 without workers). The
    last W batches of an epoch have none, so nothing is read ahead across epochs.
    """

    def __init__(self, batch_sampler: Sampler[List[Any]], num_workers: int) -> None:
        self.batch_sampler = batch_sampler
        self.stride = max(1, num_workers)

    @property
    def sampler(self) -> Sampler:
        """The sampler of the wrapped batch sampler (e.g. to call ``set_epoch``)."""
        return self.batch_sampler.sampler

    @property
    def batch_size(self) -> int:
        """The wrapped batch sampler's batch size (``DataLoader.batch_size`` is None with a batch sampler)."""
        return self.batch_sampler.batch_size

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[HintedBatch]:
        window: Deque[HintedBatch] = deque()
        for batch in self.batch_sampler:
            window.append(HintedBatch(batch))
            if len(window) > self.stride:
                ready = window.popleft()
                ready.next_first = window[-1][0]
                yield ready
        yield from window
