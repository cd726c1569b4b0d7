"""Which frames a clip uses: stride sampling (K400 style) and segment sampling (TSN / SSV2
style), random for training and evenly spaced for testing.

Frame numbers are the time unit given to PyTorchVideo's clip samplers (a video of N frames
"lasts" N), so their clip starts are frame numbers. Videos shorter than a clip's span are
stretched: the clip's frames spread evenly over the whole video and repeat, instead of failing.
"""
from fractions import Fraction
from functools import partial
from typing import Any, Dict, List

import torch
from pytorchvideo.data.clip_sampling import ClipInfo, ClipSampler, RandomMultiClipSampler

from .decoders import ClipChooser


class EvenlySpacedClipSampler(ClipSampler):
    """``num_clips`` clips spread over the video: the first starts at 0, the last ends at the
    end (one clip: centred). PyTorchVideo's ``ConstantClipsPerVideoSampler`` never reaches the
    end of the video, so the multi-view test uses this one."""

    def __init__(self, clip_duration: float, num_clips: int) -> None:
        super().__init__(clip_duration)
        self._num_clips = num_clips

    def __call__(self, last_clip_time: float, video_duration: float, annotation: Dict[str, Any]) -> ClipInfo:
        max_start = max(Fraction(video_duration) - self._clip_duration, Fraction(0))
        k = self._current_clip_index
        start = max_start * k / (self._num_clips - 1) if self._num_clips > 1 else max_start / 2
        is_last = k == self._num_clips - 1
        self._current_clip_index = 0 if is_last else k + 1
        return ClipInfo(start, start + self._clip_duration, k, 0, is_last)

    def reset(self) -> None:
        self._current_clip_index = 0


def stretched_indices(num_video_frames: int, num_frames: int) -> torch.Tensor:
    """(num_frames,) indices spread evenly over a whole (short) video, repeating frames."""
    return segment_indices(num_video_frames, num_frames, torch.full((num_frames,), 0.5))


def segment_indices(num_video_frames: int, num_frames: int, offsets: torch.Tensor) -> torch.Tensor:
    """One frame per segment: the video is cut into ``num_frames`` equal segments and frame i
    sits at relative position ``offsets[i]`` (in [0, 1)) of segment i. Returns (num_frames,)."""
    segment = num_video_frames / num_frames
    positions = (torch.arange(num_frames, dtype=torch.float64) + offsets) * segment
    return positions.floor().long().clamp(0, num_video_frames - 1)


def _strided(start: Fraction, num_frames: int, stride: int) -> torch.Tensor:
    return int(start) + stride * torch.arange(num_frames)


def random_stride_clips(num_video_frames: int, *, num_frames: int, stride: int, num_clips: int) -> List[torch.Tensor]:
    """``num_clips`` independent random clips of ``num_frames`` frames ``stride`` apart."""
    span = num_frames * stride
    if num_video_frames < span:
        return [stretched_indices(num_video_frames, num_frames) for _ in range(num_clips)]
    info = RandomMultiClipSampler(span, num_clips)(0, num_video_frames, {})
    return [_strided(start, num_frames, stride) for start in info.clip_start_sec]


def evenly_spaced_stride_clips(num_video_frames: int, *, num_frames: int, stride: int, num_clips: int) -> List[torch.Tensor]:
    """``num_clips`` clips of ``num_frames`` frames ``stride`` apart, evenly spaced from the
    start to the end of the video (one clip: the centre one)."""
    span = num_frames * stride
    if num_video_frames < span:
        return [stretched_indices(num_video_frames, num_frames) for _ in range(num_clips)]
    sampler = EvenlySpacedClipSampler(span, num_clips)
    return [_strided(round(sampler(0, num_video_frames, {}).clip_start_sec), num_frames, stride) for _ in range(num_clips)]


def random_segment_clips(num_video_frames: int, *, num_frames: int, num_clips: int) -> List[torch.Tensor]:
    """``num_clips`` clips taking one random frame from each of ``num_frames`` segments."""
    return [segment_indices(num_video_frames, num_frames, torch.rand(num_frames, dtype=torch.float64)) for _ in range(num_clips)]


def evenly_spaced_segment_clips(num_video_frames: int, *, num_frames: int, num_clips: int) -> List[torch.Tensor]:
    """Clip k takes the frame at relative position (k + 0.5) / num_clips of every segment."""
    return [
        segment_indices(num_video_frames, num_frames, torch.full((num_frames,), (k + 0.5) / num_clips, dtype=torch.float64))
        for k in range(num_clips)
    ]


def build_clip_chooser(*, mode: str, training: bool, num_frames: int, stride: int, num_clips: int) -> ClipChooser:
    """``num_video_frames -> [clip indices (num_frames,)] * num_clips`` for ``mode`` "stride"
    or "segment"; random clips when ``training``, evenly spaced ones otherwise."""
    if mode == "stride":
        choose = random_stride_clips if training else evenly_spaced_stride_clips
        return partial(choose, num_frames=num_frames, stride=stride, num_clips=num_clips)
    if mode == "segment":
        choose = random_segment_clips if training else evenly_spaced_segment_clips
        return partial(choose, num_frames=num_frames, num_clips=num_clips)
    raise ValueError(f"DATA.SAMPLING_MODE must be 'stride' or 'segment', got {mode!r}")
