"""Map-style video datasets giving PyTorchVideo-style dict samples.

``VideoClipDataset`` (pretraining, finetuning, validation): one clip per decode, R augmented
views of it (repeated sampling); bad files are logged once, replaced by other videos and
counted. ``MultiViewVideoDataset`` (testing): T temporal x S spatial views of each video from
one decode; a bad file comes back with ``error`` set, never dropped.

Both are two-phase datasets (``common.data.read_ahead``): ``start`` opens a video and chooses its
clips, then reads the frames in a background thread; ``finish`` transforms them. ``__getitems__``
(the DataLoader's call per batch) starts the next item, also across batches, before finishing
this one, so decoding overlaps augmentation. All random draws stay in the calling thread, so
results do not depend on thread timing.
"""
import random
from functools import partial
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from common.data.collate import Normalization, collate_clips, collate_views
from common.data.failures import BadFileLog, load_with_substitutes
from common.data.read_ahead import ReadAhead

from .annotations import LabeledVideo
from .decoders import ClipChooser, DecodedVideo, DecodeError, PendingFrames, VideoDecoder, assemble, plan_clips
from .transforms import MultiViewTransform

Sample = Dict[str, Any]


@dataclass
class PendingVideo:
    """A video whose frames are being read, or the error that stopped it."""

    index: int
    clips: Optional[List[torch.Tensor]] = None
    unique: Optional[torch.Tensor] = None
    num_frames: int = 0
    frames: Optional[PendingFrames] = None
    error: Optional[DecodeError] = None

    def result(self) -> DecodedVideo:
        """The decoded clips; raises the DecodeError of opening or reading."""
        if self.error is not None:
            raise self.error
        return assemble(self.frames.result(), self.clips, self.unique, self.num_frames)


def start_decode(decoder: VideoDecoder, path: str, index: int, choose_clips: ClipChooser) -> PendingVideo:
    """Opens ``path`` and chooses its clips here, then starts reading the frames in the background."""
    try:
        video = decoder.open(path)
        clips, unique = plan_clips(video, choose_clips)
    except DecodeError as error:
        return PendingVideo(index, error=error)
    return PendingVideo(index, clips, unique, video.num_frames, decoder.start_read(video, unique.tolist()))


class VideoClipDataset(Dataset):
    """Items are lists of ``num_views`` samples of one random (or centre) clip of a video.

    A sample: ``video`` float (C, T, H, W) from ``transform`` (uint8 (T, H, W, 3) -> tensor),
    ``label``, ``index``, ``clip_index`` (0), ``aug_index`` (0..num_views-1), ``path``,
    ``decode_failures`` (bad files skipped to produce the item, on its first view, 0 on the
    others, so a batch sum counts each skip once). ``collate_fn`` flattens the views into the batch.
    A transform that returns uint8 clips needs ``normalization`` (mean, std): the batch
    carries it and ``common.data.batch_inputs`` normalises there.
    """

    def __init__(
        self,
        *,
        videos: Sequence[LabeledVideo],
        decoder: VideoDecoder,
        choose_clip: ClipChooser,
        transform: Callable[[torch.Tensor], torch.Tensor],
        num_views: int = 1,
        max_retries: int = 10,
        normalization: Normalization = None,
    ) -> None:
        self.videos, self.decoder, self.choose_clip, self.transform = list(videos), decoder, choose_clip, transform
        self.num_views, self.max_retries = num_views, max_retries
        self.collate_fn = partial(collate_clips, normalization=normalization)
        self.bad_files = BadFileLog()
        self._read_ahead = ReadAhead()

    def __len__(self) -> int:
        return len(self.videos)

    def labelled_paths(self) -> List[Tuple[str, int]]:
        """(path, label) of every video, in dataset order."""
        return [(video.path, video.label) for video in self.videos]

    def start(self, index: int) -> PendingVideo:
        """Opens video ``index``, chooses its clip and starts reading the frames."""
        path = self.videos[index].path
        if self.bad_files.is_bad(path):
            return PendingVideo(index, error=DecodeError(path, "failed before"))
        return start_decode(self.decoder, path, index, self.choose_clip)

    def finish(self, pending: PendingVideo) -> List[Sample]:
        """The item's views; a bad file is reported and replaced by another video."""
        try:
            return self._views(pending.result(), pending.index, failures=0)
        except DecodeError as error:
            self.bad_files.report(error)
        decoded, failures = load_with_substitutes(
            lambda i: (self.decoder.decode(self.videos[i].path, self.choose_clip), i),
            random.randrange(len(self)),
            num_items=len(self),
            path_of=lambda i: self.videos[i].path,
            bad_files=self.bad_files,
            max_retries=self.max_retries,
        )
        return self._views(*decoded, failures=failures + 1)

    def _views(self, decoded: DecodedVideo, index: int, *, failures: int) -> List[Sample]:
        clip, video = decoded.clip(0), self.videos[index]
        return [
            {
                "video": self.transform(clip),
                "label": video.label,
                "index": index,
                "clip_index": 0,
                "aug_index": view,
                "path": video.path,
                "decode_failures": failures if view == 0 else 0,
            }
            for view in range(self.num_views)
        ]

    def __getitems__(self, indices: Sequence[int]) -> List[List[Sample]]:
        return self._read_ahead.run(indices, self.start, self.finish)

    def __getitem__(self, index: int) -> List[Sample]:
        return self.finish(self.start(index))


class MultiViewVideoDataset(Dataset):
    """Items are dicts of all test views of one video, decoded once: ``video`` float
    (V, C, T, S, S) with V = num_clips x num_crops, ``temporal_index`` and ``spatial_index``
    (V,), ``label``, ``index``, ``path``, ``error`` ("" or "path: reason"; then ``video``
    is zeros)."""

    def __init__(
        self,
        *,
        videos: Sequence[LabeledVideo],
        decoder: VideoDecoder,
        choose_clips: ClipChooser,
        transform: MultiViewTransform,
        num_clips: int,
        num_frames: int,
    ) -> None:
        self.videos, self.decoder, self.choose_clips, self.transform = list(videos), decoder, choose_clips, transform
        self.num_clips, self.num_frames = num_clips, num_frames
        self.collate_fn = partial(collate_views, normalization=None if transform.normalize else (transform.mean, transform.std))
        self.bad_files = BadFileLog()
        crops = transform.num_crops
        self.temporal_index = torch.arange(num_clips).repeat_interleave(crops)
        self.spatial_index = torch.arange(crops).repeat(num_clips)
        self._read_ahead = ReadAhead()

    def __len__(self) -> int:
        return len(self.videos)

    def labelled_paths(self) -> List[Tuple[str, int]]:
        """(path, label) of every video, in dataset order."""
        return [(video.path, video.label) for video in self.videos]

    def start(self, index: int) -> PendingVideo:
        """Opens video ``index``, chooses its clips and starts reading the frames."""
        return start_decode(self.decoder, self.videos[index].path, index, self.choose_clips)

    def finish(self, pending: PendingVideo) -> Sample:
        """All views of the video; a bad file gives zeros and ``error`` set."""
        video = self.videos[pending.index]
        try:
            decoded = pending.result()
            views, error = self.transform(decoded.frames, decoded.clips), ""
        except DecodeError as failure:
            self.bad_files.report(failure)
            size = self.transform.crop_size
            views = torch.zeros(len(self.temporal_index), 3, self.num_frames, size, size, dtype=self.transform.dtype)
            error = str(failure)
        return {
            "video": views,
            "label": video.label,
            "index": pending.index,
            "path": video.path,
            "temporal_index": self.temporal_index.clone(),
            "spatial_index": self.spatial_index.clone(),
            "error": error,
        }

    def __getitems__(self, indices: Sequence[int]) -> List[Sample]:
        return self._read_ahead.run(indices, self.start, self.finish)

    def __getitem__(self, index: int) -> Sample:
        return self.finish(self.start(index))
