"""Video decoding: decord (default) or PyAV behind one small interface.

A video is opened first (cheap: the decoder counts its frames itself, because container
headers lie, e.g. webm reports 0 frames), then the needed frames are read, each once, as
uint8 (N, H, W, 3). Both backends number frames in presentation order and give identical
frames. A file the first backend cannot open or read is retried with the next one (decord,
then PyAV), and every step is bounded by a timeout.
"""
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import av
import decord
import numpy as np
import torch

from common.data.failures import SampleError
from common.data.timeout import BoundedCall, call_with_timeout

logger = logging.getLogger(__name__)

ClipChooser = Callable[[int], List[torch.Tensor]]


class DecodeError(SampleError):
    """A video that cannot be decoded (missing, unreadable, no video stream, timed out)."""


class DecordVideo:
    """A video opened with decord; ``read`` seeks to the wanted frames (``get_batch``)."""

    def __init__(self, path: str, num_threads: int = 1) -> None:
        self._reader = decord.VideoReader(path, num_threads=num_threads)
        self.num_frames = len(self._reader)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` as uint8 (N, H, W, 3)."""
        batch = self._reader.get_batch(list(indices))
        return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch.asnumpy())


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream of an open PyAV container; ValueError when it has none."""
    if not container.streams.video:
        raise ValueError("no video stream")
    return container.streams.video[0]


def count_frames_pyav(path: str) -> int:
    """Video frames in ``path`` counted from the demuxed packets (not the headers); a
    truncated file counts the packets read before the damage."""
    count = 0
    with av.open(path) as container:
        stream = video_stream(container)
        try:
            for packet in container.demux(stream):
                count += packet.size > 0
        except av.error.FFmpegError as error:
            logger.debug("%s: demuxing stopped after %d packets: %s", path, count, error)
    return count


class PyAVVideo:
    """A video opened with PyAV; ``read`` decodes from the start up to the last wanted frame."""

    def __init__(self, path: str, num_threads: int = 1) -> None:
        self.path, self.num_threads = path, num_threads
        self.num_frames = count_frames_pyav(path)

    def _decode(self, wanted: Sequence[int]) -> Dict[int, np.ndarray]:
        """Frames ``wanted`` by number; a decoding error after some frames (a damaged tail)
        ends the read with what was decoded."""
        wanted_set, last = set(wanted), max(wanted)
        frames: Dict[int, np.ndarray] = {}
        with av.open(self.path) as container:
            stream = video_stream(container)
            stream.codec_context.thread_count = self.num_threads
            try:
                for number, frame in enumerate(container.decode(stream)):
                    if number in wanted_set:
                        frames[number] = frame.to_ndarray(format="rgb24")
                    if number >= last:
                        break
            except av.error.FFmpegError as error:
                if not frames:
                    raise
                logger.debug("%s: decoding stopped early: %s", self.path, error)
        return frames

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` as uint8 (N, H, W, 3); frames lost in a damaged tail repeat the
        last decoded frame before them."""
        decoded = self._decode(indices)
        if not decoded:
            raise ValueError("no frame could be decoded")
        available = sorted(decoded)
        nearest = [available[max(0, int(np.searchsorted(available, n, side="right")) - 1)] for n in indices]
        return torch.from_numpy(np.stack([decoded[n] for n in nearest]))


BACKENDS = {"decord": DecordVideo, "pyav": PyAVVideo}


def _short_reason(error: BaseException) -> str:
    """Exception type and first message line (decord's messages carry long traces)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


@dataclass
class DecodedVideo:
    """The frames a set of clips needs, each decoded once.

    ``frames``: uint8 (U, H, W, 3), the distinct frames in video order; ``clips[k]``: (T,)
    positions of clip k's frames in ``frames``; ``frame_indices[k]``: (T,) their frame numbers
    in the video; ``num_frames``: frames in the video as counted by the decoder.
    """

    frames: torch.Tensor
    clips: List[torch.Tensor]
    frame_indices: List[torch.Tensor]
    num_frames: int

    def clip(self, k: int) -> torch.Tensor:
        """Clip ``k`` as uint8 (T, H, W, 3): ``frames`` itself when the clip is all of them in
        order (a training clip of distinct frames), so no copy is made; else a gathered copy."""
        positions = self.clips[k]
        if len(positions) == len(self.frames) and torch.equal(positions, torch.arange(len(positions))):
            return self.frames
        return self.frames[positions]


def plan_clips(video: "VideoFile", choose_clips: ClipChooser) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """The clips' frame indices ``choose_clips(video.num_frames)`` and the sorted distinct ones
    (U,); DecodeError for a video without frames."""
    num_frames = video.num_frames
    if num_frames <= 0:
        raise DecodeError(video.path, "no video frames")
    clips = choose_clips(num_frames)
    return clips, torch.unique(torch.cat(clips))


class PendingFrames:
    """Frames being read in the background; ``result`` returns them or raises DecodeError."""

    def __init__(self, video: "VideoFile", indices: List[int], timeout_s: float) -> None:
        self._path, self._timeout_s = video.path, timeout_s
        self._call = BoundedCall(lambda: video.read(indices))

    def result(self) -> torch.Tensor:
        """uint8 (N, H, W, 3)."""
        try:
            return self._call.result(self._timeout_s)
        except TimeoutError as error:
            raise DecodeError(self._path, f"reading frames timed out ({error})") from None


class VideoFile:
    """A video opened by backend ``backends[0]``; reading falls back to the later backends."""

    def __init__(self, path: str, video: object, backends: Sequence[str], num_threads: int, reasons: List[str]) -> None:
        self.path, self._video, self._backends, self._num_threads = path, video, tuple(backends), num_threads
        self._reasons = reasons  # why earlier backends could not open the file
        self.num_frames: int = video.num_frames

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` as uint8 (N, H, W, 3); raises DecodeError when no backend can."""
        reasons = list(self._reasons)
        for position, name in enumerate(self._backends):
            try:
                video = self._video if position == 0 else BACKENDS[name](self.path, self._num_threads)
                last = video.num_frames - 1
                return video.read([min(i, last) for i in indices])
            except Exception as error:  # decoders raise many types, decord a plain Exception
                reasons.append(f"{name}: {_short_reason(error)}")
                logger.debug("%s: %s", self.path, reasons[-1])
        raise DecodeError(self.path, "; ".join(reasons))


@dataclass(frozen=True)
class VideoDecoder:
    """Opens and reads videos with ``backends`` in order; ``timeout_s`` (0: none) bounds the
    opening and, separately, the reading of one file. Failures raise DecodeError(path, reason)
    with every backend's reason."""

    backends: Tuple[str, ...] = ("decord", "pyav")
    num_threads: int = 1
    timeout_s: float = 30.0

    def _open_any(self, path: str) -> VideoFile:
        reasons = []
        for position, name in enumerate(self.backends):
            try:
                video = BACKENDS[name](path, self.num_threads)
                if video.num_frames <= 0:
                    raise ValueError("no video frames")
                return VideoFile(path, video, self.backends[position:], self.num_threads, reasons)
            except Exception as error:  # decoders raise many types, decord a plain Exception
                reasons.append(f"{name}: {_short_reason(error)}")
        raise DecodeError(path, "; ".join(reasons))

    def open(self, path: str) -> VideoFile:
        """Opens ``path`` and counts its frames (``VideoFile.num_frames``)."""
        if not os.path.exists(path):
            raise DecodeError(path, "file not found")
        try:
            return call_with_timeout(lambda: self._open_any(path), self.timeout_s)
        except TimeoutError as error:
            raise DecodeError(path, f"opening timed out ({error})") from None

    def start_read(self, video: VideoFile, indices: Sequence[int]) -> PendingFrames:
        """Starts reading ``indices`` of ``video`` in a background thread."""
        return PendingFrames(video, list(indices), self.timeout_s)

    def decode(self, path: str, choose_clips: ClipChooser) -> DecodedVideo:
        """Opens ``path``, chooses clips ``choose_clips(num_frames)`` and reads their frames."""
        video = self.open(path)
        clips, unique = plan_clips(video, choose_clips)
        return assemble(self.start_read(video, unique.tolist()).result(), clips, unique, video.num_frames)


def assemble(frames: torch.Tensor, clips: List[torch.Tensor], unique: torch.Tensor, num_frames: int) -> DecodedVideo:
    """A DecodedVideo from the frames (U, H, W, 3) read for the sorted distinct indices ``unique``."""
    return DecodedVideo(frames, [torch.searchsorted(unique, clip) for clip in clips], clips, num_frames)


def build_decoder(backend: str = "decord", *, fallback: bool = True, num_threads: int = 1, timeout_s: float = 30.0) -> VideoDecoder:
    """A decoder using ``backend`` ("decord" or "pyav"), then PyAV when ``fallback`` is set."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; choose from {sorted(BACKENDS)}")
    backends = (backend, "pyav") if fallback and backend != "pyav" else (backend,)
    return VideoDecoder(backends=backends, num_threads=num_threads, timeout_s=timeout_s)
