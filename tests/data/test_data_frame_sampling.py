import pytest
import torch

from videoconvmae.data.frame_sampling import (
    EvenlySpacedClipSampler,
    build_clip_chooser,
    evenly_spaced_segment_clips,
    evenly_spaced_stride_clips,
    random_segment_clips,
    random_stride_clips,
    segment_indices,
    stretched_indices,
)


def test_random_stride_clips_are_strided_and_inside_the_video():
    starts = set()
    for _ in range(50):
        (clip,) = random_stride_clips(100, num_frames=16, stride=4, num_clips=1)
        assert torch.equal(torch.diff(clip), torch.full((15,), 4)) and 0 <= clip[0] and clip[-1] < 100
        starts.add(int(clip[0]))
    assert len(starts) > 10 and max(starts) <= 100 - 64


def test_short_videos_repeat_frames_evenly_instead_of_failing():
    (clip,) = random_stride_clips(10, num_frames=16, stride=4, num_clips=1)
    assert torch.equal(clip, stretched_indices(10, 16))
    assert clip.min() == 0 and clip.max() == 9 and bool((torch.diff(clip) >= 0).all())
    assert set(torch.bincount(clip, minlength=10).tolist()) == {1, 2}  # every frame, none frozen


def test_evenly_spaced_clips_cover_the_video_from_start_to_end():
    clips = evenly_spaced_stride_clips(300, num_frames=16, stride=4, num_clips=5)
    assert len(clips) == 5 and clips[0][0] == 0 and clips[-1][-1] == 300 - 4
    starts = torch.stack([c[0] for c in clips])
    assert torch.diff(starts).tolist() == [59, 59, 59, 59]
    (centre,) = evenly_spaced_stride_clips(300, num_frames=16, stride=4, num_clips=1)
    assert centre[0] == (300 - 64) // 2


def test_evenly_spaced_clip_sampler_follows_pytorchvideo_protocol():
    sampler = EvenlySpacedClipSampler(10, 3)
    infos = [sampler(0, 50, {}) for _ in range(3)]
    assert [(i.clip_start_sec, i.clip_end_sec, i.clip_index, i.is_last_clip) for i in infos] == [(0, 10, 0, False), (20, 30, 1, False), (40, 50, 2, True)]
    assert sampler(0, 50, {}).clip_index == 0  # restarts for the next video


def test_segment_sampling_takes_one_frame_per_segment():
    for clip in random_segment_clips(64, num_frames=8, num_clips=3):
        assert torch.equal(clip // 8, torch.arange(8))
    views = evenly_spaced_segment_clips(64, num_frames=8, num_clips=2)
    assert views[0].tolist() == list(range(2, 64, 8)) and views[1].tolist() == list(range(6, 64, 8))
    assert segment_indices(5, 8, torch.zeros(8)).max() < 5


def test_build_clip_chooser_modes():
    choose = build_clip_chooser(mode="stride", training=False, num_frames=4, stride=2, num_clips=2)
    assert [c.tolist() for c in choose(20)] == [[0, 2, 4, 6], [12, 14, 16, 18]]
    choose = build_clip_chooser(mode="segment", training=True, num_frames=4, stride=2, num_clips=1)
    assert torch.equal(choose(40)[0] // 10, torch.arange(4))
    with pytest.raises(ValueError, match="SAMPLING_MODE"):
        build_clip_chooser(mode="dense", training=True, num_frames=4, stride=2, num_clips=1)
