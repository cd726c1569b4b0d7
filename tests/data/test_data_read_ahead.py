"""Reading ahead within and across batches: same items, overlapped starts, hints a real
DataLoader honours, and RNG states carried from ``start`` to ``finish``."""
import os
import pickle
import random

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from common.data.read_ahead import HintedBatch, LookaheadBatchSampler, ReadAhead, TwoPhaseDataset
from common.engine.sampling import SeededDataset, TrainSampler
from videoconvmae.data import LabeledVideo, PretrainVideoTransform, VideoClipDataset, build_clip_chooser, build_decoder
from videoconvmae.data.annotations import read_path_label_list


class Recorder:
    """start/finish that log their calls; finish(start(k)) == k * 10."""

    def __init__(self):
        self.events = []

    def start(self, key):
        self.events.append(("start", key))
        return key * 10

    def finish(self, started):
        self.events.append(("finish", started // 10))
        return started


def test_run_gives_the_items_in_order_and_starts_the_next_before_finishing_this_one():
    recorder, ahead = Recorder(), ReadAhead()
    assert ahead.run([3, 1, 2], recorder.start, recorder.finish) == [30, 10, 20]
    assert recorder.events == [("start", 3), ("start", 1), ("finish", 3), ("start", 2), ("finish", 1), ("finish", 2)]
    assert ahead.run([], recorder.start, recorder.finish) == []


def test_a_hint_is_started_at_the_end_and_used_by_the_next_batch():
    recorder, ahead = Recorder(), ReadAhead()
    batch = HintedBatch([1, 2])
    batch.next_first = 5
    assert ahead.run(batch, recorder.start, recorder.finish) == [10, 20]
    assert recorder.events[-2:] == [("start", 5), ("finish", 2)]
    recorder.events.clear()
    assert ahead.run([5, 6], recorder.start, recorder.finish) == [50, 60]
    assert ("start", 5) not in recorder.events and ("finish", 5) in recorder.events


def test_a_wrong_hint_is_dropped_and_the_batch_is_still_right():
    recorder, ahead = Recorder(), ReadAhead()
    batch = HintedBatch([1])
    batch.next_first = 9
    ahead.run(batch, recorder.start, recorder.finish)
    assert ahead.run([4, 9], recorder.start, recorder.finish) == [40, 90]
    assert recorder.events.count(("start", 9)) == 2  # the kept 9 was not the batch's first: dropped


def test_a_kept_item_is_not_used_in_another_process():
    recorder, ahead = Recorder(), ReadAhead()
    batch = HintedBatch([1])
    batch.next_first = 2
    ahead.run(batch, recorder.start, recorder.finish)
    pid, key, started = ahead._kept
    ahead._kept = (pid + 1, key, started)  # as a forked child sees its parent's item
    assert ahead.run([2], recorder.start, recorder.finish) == [20]
    assert recorder.events.count(("start", 2)) == 2


def test_a_kept_item_is_not_pickled():
    ahead = ReadAhead()
    batch = HintedBatch([1])
    batch.next_first = 2
    ahead.run(batch, Recorder().start, Recorder().finish)
    assert ahead._kept is not None and pickle.loads(pickle.dumps(ahead))._kept is None


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_lookahead_batches_name_the_first_key_of_the_same_workers_next_batch(workers):
    plain = BatchSampler(SequentialSampler(range(23)), batch_size=4, drop_last=False)
    batches = list(LookaheadBatchSampler(plain, workers))
    stride = max(1, workers)
    assert batches == list(plain) and len(LookaheadBatchSampler(plain, workers)) == len(plain)
    assert LookaheadBatchSampler(plain, workers).batch_size == 4
    for b, batch in enumerate(batches):
        expected = batches[b + stride][0] if b + stride < len(batches) else None
        assert batch.next_first == expected
    assert pickle.loads(pickle.dumps(batches[0])).next_first == batches[0].next_first


class Traced(Dataset):
    """A two-phase dataset whose items say which process loaded them and whether they were
    started by an earlier batch (read ahead across batches)."""

    def __init__(self, size):
        self.size, self._read_ahead, self._batch = size, ReadAhead(), 0

    def __len__(self):
        return self.size

    def start(self, index):
        return {"index": index, "batch": self._batch}

    def finish(self, started):
        return started["index"], started["batch"] < self._batch, os.getpid()

    def __getitems__(self, indices):
        self._batch += 1
        return self._read_ahead.run(indices, self.start, self.finish)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataloader_delivers_each_hint_to_the_worker_that_uses_it(workers):
    dataset = Traced(30)
    assert isinstance(dataset, TwoPhaseDataset)
    batch_sampler = LookaheadBatchSampler(BatchSampler(SequentialSampler(dataset), 3, drop_last=False), workers)
    loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=list)
    batches = list(loader)
    assert [index for batch in batches for index, _, _ in batch] == list(range(30))
    stride = max(1, workers)
    for b, batch in enumerate(batches):  # every batch but each worker's first began read ahead
        assert [read_ahead for _, read_ahead, _ in batch] == [b >= stride] + [False] * (len(batch) - 1)
    if workers:
        assert len({pid for batch in batches for _, _, pid in batch}) == workers


class RandomTwoPhase(Dataset):
    """Draws from python, numpy and torch RNGs in both phases."""

    def __len__(self):
        return 8

    def start(self, index):
        return index, random.random(), float(np.random.rand())

    def finish(self, started):
        return (*started, float(torch.rand(())))

    def __getitem__(self, index):
        return self.finish(self.start(index))


def test_seeded_read_ahead_gives_each_sample_its_own_seeded_draws():
    seeded = SeededDataset(RandomTwoPhase())
    sampler = TrainSampler(8, rank=0, world_size=1, seed=3)
    keys = list(sampler)
    outer = random.random(), float(np.random.rand()), float(torch.rand(()))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    batch = HintedBatch(keys[:4])
    batch.next_first = keys[4]
    first, second = seeded.__getitems__(batch), seeded.__getitems__(keys[4:])
    after = random.random(), float(np.random.rand()), float(torch.rand(()))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    assert first + second == [seeded[key] for key in keys]
    assert after == (random.random(), float(np.random.rand()), float(torch.rand(())))  # outer streams untouched
    assert len({item[1] for item in first + second}) == 8 and outer[0] != after[0]


def test_seeded_video_clips_read_ahead_equal_those_loaded_one_by_one(video_data):
    videos = [LabeledVideo(v.path, v.label) for v in read_path_label_list(str(video_data["kinetics"] / "train.csv"))]
    dataset = VideoClipDataset(
        videos=videos, decoder=build_decoder("decord"),
        choose_clip=build_clip_chooser(mode="stride", training=True, num_frames=4, stride=2, num_clips=1),
        transform=PretrainVideoTransform(crop_size=16, mean=(0.5,) * 3, std=(0.25,) * 3), num_views=2,
    )
    seeded = SeededDataset(dataset)
    keys = list(TrainSampler(len(videos), rank=0, world_size=1, seed=0))
    batches = list(LookaheadBatchSampler(BatchSampler(keys, 3, drop_last=False), 1))
    together = [item for batch in batches for item in seeded.__getitems__(batch)]
    alone = [seeded[key] for key in keys]
    for items, singles in zip(together, alone):
        for view, single in zip(items, singles):
            assert view["index"] == single["index"] and view["aug_index"] == single["aug_index"]
            assert torch.equal(view["video"], single["video"])
