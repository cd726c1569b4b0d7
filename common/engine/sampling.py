"""Samplers: epoch-seeded sharded training order (with repeated augmentation) and unpadded eval shards.

Training samples are ``(index, sample_seed)`` pairs: the order and each sample's augmentation
seed are pure functions of (``seed``, epoch, position), so a run resumed in the middle of an
epoch sees exactly the samples and augmentations of an uninterrupted run, whatever the number
of data workers. ``SeededDataset`` applies the seed around each sample's loading.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Sequence, Tuple

import torch
from torch.utils.data import Dataset, Sampler

from common.data.read_ahead import ReadAhead, TwoPhaseDataset
from common.engine.rng import CpuRngStates, cpu_rng_states, cpu_rngs_from, seeded_rngs

SeededIndex = Tuple[int, int]
SEED_RANGE = 2**31 - 1


class TrainSampler(Sampler[SeededIndex]):
    """Shuffled, sharded training order; each index repeated ``repeats`` times (repeated aug).

    The epoch's global order is a permutation of the dataset seeded by (``seed``, epoch), each
    index repeated ``repeats`` times in a row; rank ``r`` takes positions ``r, r + W, ...`` so
    the copies of a sample land on different ranks. Every rank gets ``len(dataset) // W``
    samples (the remainder is dropped, so all ranks run the same number of steps).

    A rewind after divergence redraws the rest of an epoch (``redraws``: ``(start, salt)`` pairs,
    ``start`` in samples of a rank): the global order from ``start * W`` on is permuted by a
    generator seeded by (``seed``, epoch, ``salt``), the same on every rank, so what the ranks
    have seen stays and the rest (the dropped remainder included) comes in another order.
    """

    def __init__(self, dataset_len: int, *, rank: int, world_size: int, seed: int, repeats: int = 1):
        if dataset_len < world_size:
            raise ValueError(f"dataset of {dataset_len} samples is smaller than the {world_size} ranks")
        self.dataset_len = dataset_len
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.repeats = repeats
        self.per_rank = dataset_len // world_size
        self.epoch = 0
        self.start = 0
        self.redraws: Sequence[Tuple[int, int]] = ()

    def set_epoch(self, epoch: int, start: int = 0, redraws: Sequence[Tuple[int, int]] = ()) -> None:
        """Select the epoch's order (with the ``redraws`` of rewinds in it, in order) and skip its
        first ``start`` samples of this rank (resume)."""
        self.epoch = epoch
        self.start = start
        self.redraws = tuple(redraws)

    def epoch_order(self, epoch: int, redraws: Sequence[Tuple[int, int]] = ()) -> List[SeededIndex]:
        """This rank's full ``(index, sample_seed)`` list for ``epoch``."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.dataset_len, generator=gen).repeat_interleave(self.repeats)
        seeds = torch.randint(SEED_RANGE, (len(order),), generator=gen)
        for start, salt in redraws:
            cut = start * self.world_size
            redraw = torch.Generator().manual_seed((self.seed * 100_003 + epoch) * 1_000_003 + salt)
            rest = torch.randperm(len(order) - cut, generator=redraw) + cut
            order[cut:], seeds[cut:] = order[rest], seeds[rest]
        positions = slice(self.rank, self.per_rank * self.world_size, self.world_size)
        return list(zip(order[positions].tolist(), seeds[positions].tolist()))

    def __iter__(self) -> Iterator[SeededIndex]:
        return iter(self.epoch_order(self.epoch, self.redraws)[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + W, ...`` in order: every index on exactly one rank, no padding."""

    def __init__(self, dataset_len: int, *, rank: int, world_size: int):
        self.indices = range(rank, dataset_len, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SeededDataset(Dataset):
    """Wraps a dataset so ``ds[(index, seed)]`` loads ``index`` with python/numpy/torch RNGs seeded.

    The global RNG states are restored afterwards, so loading in the main process
    (``num_workers=0``) leaves the training RNG stream untouched. A two-phase dataset
    (``common.data.read_ahead``) is loaded a batch at a time with reading ahead: each item's
    RNG states travel from its ``start`` to its ``finish``, so every sample is the one
    ``ds[(index, seed)]`` gives.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.collate_fn = getattr(dataset, "collate_fn", None)
        self._read_ahead = ReadAhead()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SeededIndex) -> Any:
        index, seed = key
        with seeded_rngs(seed):
            return self.dataset[index]

    def __getitems__(self, keys: Sequence[SeededIndex]) -> List[Any]:
        if not isinstance(self.dataset, TwoPhaseDataset):
            return [self[key] for key in keys]
        return self._read_ahead.run(keys, self._start, self._finish)

    def _start(self, key: SeededIndex) -> Tuple[Any, CpuRngStates]:
        index, seed = key
        with seeded_rngs(seed):
            started = self.dataset.start(index)
            return started, cpu_rng_states()

    def _finish(self, started: Tuple[Any, CpuRngStates]) -> Any:
        item, states = started
        with cpu_rngs_from(states):
            return self.dataset.finish(item)
