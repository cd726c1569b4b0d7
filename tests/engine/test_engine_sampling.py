"""Samplers (epoch-seeded order, sharding, repeated augmentation, resume skip), seeded loading, RNG state."""
import random

import numpy as np
import pytest
import torch

from common.engine.rng import capture_rng_state, restore_rng_state, seed_everything, seeded_rngs
from common.engine.sampling import SeededDataset, ShardSampler, TrainSampler


def _rank_orders(n, world, **kw):
    return [TrainSampler(n, rank=r, world_size=world, seed=3, **kw).epoch_order(0) for r in range(world)]


def test_train_sampler_is_epoch_seeded_and_shards_disjoint():
    a = TrainSampler(10, rank=0, world_size=1, seed=1)
    assert a.epoch_order(0) == TrainSampler(10, rank=0, world_size=1, seed=1).epoch_order(0)
    assert a.epoch_order(0) != a.epoch_order(1)
    assert sorted(i for i, _ in a.epoch_order(0)) == list(range(10))
    orders = _rank_orders(11, 2)
    assert all(len(o) == 5 for o in orders)
    assert not {i for i, _ in orders[0]} & {i for i, _ in orders[1]}


def test_repeated_augmentation_puts_copies_on_different_ranks_with_different_seeds():
    orders = _rank_orders(8, 2, repeats=2)
    for (i0, s0), (i1, s1) in zip(orders[0], orders[1]):
        assert i0 == i1 and s0 != s1


def test_set_epoch_start_skips_exactly():
    sampler = TrainSampler(12, rank=0, world_size=1, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=5)
    assert list(sampler) == full[5:] and len(sampler) == 7


def test_a_redraw_reorders_the_rest_of_the_epoch_alike_on_every_rank():
    """A rewind redraws the order from a per-rank position on: what each rank has already seen
    stays, the rest of the epoch holds the same samples in another order, the same for a given
    salt on every rank (and after a resume), another for another salt; redraws stack."""
    world, start = 2, 3
    samplers = [TrainSampler(21, rank=r, world_size=world, seed=3) for r in range(world)]
    plain = [s.epoch_order(4) for s in samplers]
    redrawn = [s.epoch_order(4, redraws=[(start, 1)]) for s in samplers]
    for before, after in zip(plain, redrawn):
        assert after[:start] == before[:start] and after[start:] != before[start:] and len(after) == len(before)
    seen = {pair for order in plain for pair in order[:start]}
    unseen = sorted(set(TrainSampler(21, rank=0, world_size=1, seed=3).epoch_order(4)) - seen)
    rest = [pair for order in redrawn for pair in order[start:]]
    assert len(set(rest)) == len(rest) == world * (10 - start) and set(rest) <= set(unseen)  # unseen ones only
    assert not {i for i, _ in redrawn[0]} & {i for i, _ in redrawn[1]}  # still disjoint shards
    assert redrawn == [s.epoch_order(4, redraws=[(start, 1)]) for s in samplers]
    assert redrawn != [s.epoch_order(4, redraws=[(start, 2)]) for s in samplers]
    stacked = samplers[0].epoch_order(4, redraws=[(start, 1), (6, 2)])
    assert stacked[:6] == redrawn[0][:6] and stacked[6:] != redrawn[0][6:]
    samplers[0].set_epoch(4, start=5, redraws=[(start, 1)])  # a resume inside the redrawn epoch
    assert list(samplers[0]) == redrawn[0][5:]


def test_train_sampler_rejects_tiny_dataset():
    with pytest.raises(ValueError, match="smaller"):
        TrainSampler(1, rank=0, world_size=2, seed=0)


def test_shard_sampler_gives_each_index_once_without_padding():
    shards = [list(ShardSampler(7, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    assert [len(ShardSampler(7, rank=r, world_size=3)) for r in range(3)] == [3, 2, 2]


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return (random.random(), float(np.random.rand()), float(torch.rand(())))


def test_seeded_dataset_is_deterministic_and_leaves_global_rng_alone():
    ds = SeededDataset(_RandomItems())
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = ds[(1, 42)]
    assert torch.rand(1) == before  # the global stream is untouched
    assert ds[(1, 42)] == a and ds[(1, 43)] != a
    assert len(ds) == 4


def test_seeded_rngs_restores_states():
    seed_everything(0)
    state = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    with seeded_rngs(9):
        random.random(), np.random.rand(), torch.rand(1)
    assert random.getstate() == state[0]
    assert (np.random.get_state()[1] == state[1]).all()
    assert torch.equal(torch.get_rng_state(), state[2])


def test_capture_restore_rng_round_trip(tmp_path):
    seed_everything(1)
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
