"""Sliding windows over a whole (long) video, for window-mode features (temporal action
localization).

The video is read at ``sampling_rate``: sampled frame i is source frame ``i * sampling_rate``.
Window k covers sampled frames ``k * stride ... k * stride + window_frames - 1``. A video of N
source frames has M = (N - 1) // sampling_rate + 1 sampled frames and
``max(M - window_frames, 0) // stride + 1`` windows (a video shorter than one window gives one,
its last frame repeated). Every sampled frame is read and preprocessed once, however many
windows overlap it: frames are read in chunks as the windows advance and dropped behind them.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Dict, Iterator, List

import av
import torch

from .decoders import VideoDecoder, VideoFile
from .transforms import MultiViewTransform


def sampled_frame_count(num_frames: int, sampling_rate: int) -> int:
    """Sampled frames of a video of ``num_frames`` source frames: source frames 0, r, 2r, ..."""
    return (num_frames - 1) // sampling_rate + 1


def window_count(num_frames: int, *, window_frames: int, window_stride: int, sampling_rate: int) -> int:
    """Windows of ``window_frames`` sampled frames, ``window_stride`` apart, over the video."""
    sampled = sampled_frame_count(num_frames, sampling_rate)
    return max(sampled - window_frames, 0) // window_stride + 1


def window_indices(k: int, *, window_frames: int, window_stride: int, num_sampled: int) -> List[int]:
    """Sampled-frame indices of window ``k`` (the last frame repeats past the end)."""
    return [min(k * window_stride + j, num_sampled - 1) for j in range(window_frames)]


def video_fps(path: str) -> float:
    """Frames per second of the first video stream (container header; 0.0 if unknown)."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (av.error.FFmpegError, IndexError):
        return 0.0
    return float(Fraction(rate)) if rate else 0.0


class SlidingWindows:
    """The windows of one video as normalised model inputs, in batches.

    ``num_windows``, ``start_frames`` (source frame of each window's first frame),
    ``start_seconds`` (the same in seconds; frame numbers when the fps is unknown) are known
    after opening; ``batches()`` yields float (B, C, T, S, S) with B <= ``batch_size``. Each
    window is resized (short side ``crop_size``), centre-cropped and normalised exactly as
    ``CentreViewTransform`` does for one clip. Raises DecodeError if the file cannot be opened
    (on construction) or read (while iterating).
    """

    def __init__(self, path: str, *, decoder: VideoDecoder, crop_size: int, mean, std, window_frames: int,
                 window_stride: int, sampling_rate: int, batch_size: int) -> None:
        if window_frames < 1 or window_stride < 1 or sampling_rate < 1 or batch_size < 1:
            raise ValueError(f"window_frames {window_frames}, window_stride {window_stride}, sampling_rate "
                             f"{sampling_rate} and batch_size {batch_size} must all be >= 1")
        self.path, self.decoder = path, decoder
        self.window_frames, self.window_stride, self.sampling_rate = window_frames, window_stride, sampling_rate
        self.batch_size = batch_size
        self._transform = MultiViewTransform(crop_size=crop_size, num_crops=1, mean=mean, std=std)
        self._video: VideoFile = decoder.open(path)
        self.num_frames = self._video.num_frames
        self.fps = video_fps(path)
        self.num_sampled = sampled_frame_count(self.num_frames, sampling_rate)
        self.num_windows = window_count(self.num_frames, window_frames=window_frames, window_stride=window_stride,
                                        sampling_rate=sampling_rate)
        self.start_frames = [k * window_stride * sampling_rate for k in range(self.num_windows)]
        self.start_seconds = [f / self.fps if self.fps else float(f) for f in self.start_frames]

    def _indices(self, k: int) -> List[int]:
        return window_indices(k, window_frames=self.window_frames, window_stride=self.window_stride,
                              num_sampled=self.num_sampled)

    def _read(self, sampled: List[int]) -> torch.Tensor:
        """Preprocessed frames (C, U, S, S) of sampled frames ``sampled``, read in one go."""
        raw = self.decoder.start_read(self._video, [i * self.sampling_rate for i in sampled]).result()
        return self._transform(raw, [torch.arange(len(sampled))])[0]

    def batches(self) -> Iterator[torch.Tensor]:
        """float (B, C, T, S, S) windows in order, each frame read once."""
        cache: Dict[int, torch.Tensor] = {}
        for first in range(0, self.num_windows, self.batch_size):
            windows = [self._indices(k) for k in range(first, min(first + self.batch_size, self.num_windows))]
            for index in [i for i in list(cache) if i < windows[0][0]]:
                del cache[index]  # behind every window still to come
            new = sorted({i for w in windows for i in w} - set(cache))
            if new:
                frames = self._read(new)
                cache.update({i: frames[:, n] for n, i in enumerate(new)})
            yield torch.stack([torch.stack([cache[i] for i in w], dim=1) for w in windows])

