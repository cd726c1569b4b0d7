"""Video clip transforms. Geometry (crop, resize, flip) and RandAugment run on uint8 frames;
the float conversion and normalisation come last, on the small output clip.

Frames come from the decoder as uint8 (T, H, W, 3); transforms return float (C, T, S, S).
"""
import random
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import RandomResizedCrop

import common.data  # noqa: F401  (installs the torchvision alias pytorchvideo.transforms needs)
from common.quiet_imports import torchscript_deprecation_silenced

with torchscript_deprecation_silenced():
    from pytorchvideo.transforms import RandAugment
from timm.data.random_erasing import RandomErasing

from common.data.collate import normalization_affine

Box = Tuple[int, int, int, int]  # top, left, height, width

# Crop positions of VideoMAE's multi-scale crop, in quarters of the free space (row, column).
MULTISCALE_OFFSETS = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4), (1, 1), (1, 3), (3, 1), (3, 3))


def to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) -> (T, C, H, W) view (channels-last memory, which uint8 resizing likes)."""
    return frames.permute(0, 3, 1, 2)


def multiscale_crop_box(height: int, width: int, *, scales: Sequence[float], max_distort: int) -> Box:
    """VideoMAE's multi-scale crop: height and width are each ``scale * min(height, width)`` for
    two scales at most ``max_distort`` apart in ``scales``; the box sits at one of 13 fixed
    positions (corners, centre, edge middles, quarter points)."""
    base = min(height, width)
    sizes = [int(base * scale) for scale in scales]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_h, crop_w = random.choice(pairs)
    row, col = random.choice(MULTISCALE_OFFSETS)
    return (height - crop_h) * row // 4, (width - crop_w) * col // 4, crop_h, crop_w


def random_resized_crop_box(frames: torch.Tensor, *, area_range: Sequence[float], aspect_range: Sequence[float]) -> Box:
    """torchvision's RandomResizedCrop box for frames (..., H, W)."""
    return RandomResizedCrop.get_params(frames, list(area_range), list(aspect_range))


def crop_resize(frames: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """uint8 (T, C, H, W) -> (T, C, size, size): crop ``box`` and resize it (bilinear, antialiased).

    Antialiasing only changes a downscale; an upscale takes the plain bilinear kernel, which
    gives the same pixels in about 2/3 of the time."""
    top, left, height, width = box
    downscale = height > size or width > size
    return F.resize(frames[..., top : top + height, left : left + width], [size, size], antialias=downscale)


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, C, H, W) -> short side ``size``, aspect ratio kept."""
    height, width = frames.shape[-2:]
    scale = size / min(height, width)
    return F.resize(frames, [max(size, round(height * scale)), max(size, round(width * scale))], antialias=True)


def spatial_crop_starts(length: int, crop: int, num_crops: int) -> List[int]:
    """Starts of ``num_crops`` crops along a side: evenly from the start to the end
    (3 crops: start, centre, end; 1 crop: centre)."""
    free = length - crop
    if num_crops == 1:
        return [free // 2]
    return [free * k // (num_crops - 1) for k in range(num_crops)]


def spatial_crops(frames: torch.Tensor, crop: int, num_crops: int) -> List[torch.Tensor]:
    """Square crops (views) of (..., H, W) frames whose short side is ``crop``, spread along
    the long side."""
    height, width = frames.shape[-2:]
    if height >= width:
        return [frames[..., s : s + crop, :crop] for s in spatial_crop_starts(height, crop, num_crops)]
    return [frames[..., :crop, s : s + crop] for s in spatial_crop_starts(width, crop, num_crops)]


def channels_first(frames: torch.Tensor, *, flip: bool = False) -> torch.Tensor:
    """uint8 (T, C, H, W), any memory layout -> contiguous (C, T, H, W), mirrored in W when
    ``flip``. (NumPy's strided copy is about twice as fast as torch's here.)"""
    array = frames.numpy()
    if flip:
        array = array[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(1, 0, 2, 3)))


def normalize_into(out: torch.Tensor, frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Writes ``(frames / 255 - mean) / std`` into float ``out``; both (C, ...), same shape."""
    scale, shift = normalization_affine(mean, std, (-1,) + (1,) * (frames.dim() - 1))
    return out.copy_(frames).mul_(scale).sub_(shift)


def to_normalized_cthw(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, flip: bool = False) -> torch.Tensor:
    """uint8 (T, C, H, W) -> float32 (C, T, H, W), ``(x / 255 - mean) / std`` per channel,
    mirrored in W when ``flip``."""
    cthw = channels_first(frames, flip=flip)
    return normalize_into(torch.empty(cthw.shape), cthw, mean, std)


class PretrainVideoTransform:
    """Pretraining clip transform: multi-scale crop (or random resized crop) to
    ``crop_size``, optional horizontal flip, normalisation. uint8 (T, H, W, 3) -> float
    (C, T, S, S); with ``normalize=False`` uint8 (C, T, S, S), normalised by the consumer."""

    def __init__(
        self,
        *,
        crop_size: int,
        crop: str = "multiscale",
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        area_range: Sequence[float] = (0.2, 1.0),
        aspect_range: Sequence[float] = (0.75, 1.3333),
        flip: bool = True,
        mean: Sequence[float],
        std: Sequence[float],
        normalize: bool = True,
    ) -> None:
        if crop not in ("multiscale", "random_resized"):
            raise ValueError(f"crop must be 'multiscale' or 'random_resized', got {crop!r}")
        self.crop_size, self.crop, self.scales, self.max_distort = crop_size, crop, scales, max_distort
        self.area_range, self.aspect_range = area_range, aspect_range
        self.flip, self.mean, self.std, self.normalize = flip, mean, std, normalize

    def crop_box(self, frames: torch.Tensor) -> Box:
        """A random crop box for (T, C, H, W) frames."""
        if self.crop == "multiscale":
            return multiscale_crop_box(*frames.shape[-2:], scales=self.scales, max_distort=self.max_distort)
        return random_resized_crop_box(frames, area_range=self.area_range, aspect_range=self.aspect_range)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        clip = to_tchw(frames)
        clip = crop_resize(clip, self.crop_box(clip), self.crop_size)
        flip = self.flip and random.random() < 0.5
        if not self.normalize:
            return channels_first(clip, flip=flip)
        return to_normalized_cthw(clip, self.mean, self.std, flip=flip)


class FinetuneVideoTransform:
    """Finetuning clip transform: random resized crop, RandAugment with the same ops and
    magnitudes on every frame (PyTorchVideo's), optional flip, normalisation, random erasing of
    one box through all frames. uint8 (T, H, W, 3) -> float (C, T, S, S)."""

    def __init__(
        self,
        *,
        crop_size: int,
        area_range: Sequence[float] = (0.08, 1.0),
        aspect_range: Sequence[float] = (0.75, 1.3333),
        flip: bool = True,
        rand_augment: Optional[Tuple[int, int, float]] = (7, 4, 0.5),
        erase_prob: float = 0.25,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        """``rand_augment``: (magnitude, number of ops, magnitude std) or None for none."""
        self.crop_size, self.area_range, self.aspect_range = crop_size, area_range, aspect_range
        self.flip, self.mean, self.std = flip, mean, std
        self.rand_augment = None
        if rand_augment is not None:
            magnitude, num_ops, mstd = rand_augment
            self.rand_augment = RandAugment(
                magnitude=magnitude,
                num_layers=num_ops,
                transform_hparas={"fill": (128, 128, 128)},
                sampling_hparas={"sampling_data_type": "int", "sampling_min": 0, "sampling_std": mstd},
            )
        self.erase = RandomErasing(erase_prob, mode="pixel", max_count=1, device="cpu") if erase_prob > 0 else None

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        clip = to_tchw(frames)
        box = random_resized_crop_box(clip, area_range=self.area_range, aspect_range=self.aspect_range)
        clip = crop_resize(clip, box, self.crop_size)
        if self.rand_augment is not None:
            clip = self.rand_augment(clip)
        flip = self.flip and random.random() < 0.5
        video = to_normalized_cthw(clip, self.mean, self.std, flip=flip)
        if self.erase is not None:
            channels, time = video.shape[:2]
            self.erase(video.view(channels * time, *video.shape[2:]))  # one box, all frames
        return video


class MultiViewTransform:
    """Evaluation views of decoded clips: short side resized to ``crop_size`` once for all
    clips, then ``num_crops`` square crops along the long side, normalised.

    Called with uint8 (U, H, W, 3) frames and the clips' (T,) positions in them; returns float
    (V, C, T, S, S) with V = clips x crops, view v = clip v // crops, crop v % crops (uint8 with
    ``normalize=False``, normalised by the consumer).
    """

    def __init__(self, *, crop_size: int, num_crops: int, mean: Sequence[float], std: Sequence[float],
                 normalize: bool = True) -> None:
        self.crop_size, self.num_crops, self.mean, self.std = crop_size, num_crops, mean, std
        self.normalize = normalize

    @property
    def dtype(self) -> torch.dtype:
        """float32 when normalising, else uint8 (normalised later, see ``common.data.batch_inputs``)."""
        return torch.float32 if self.normalize else torch.uint8

    def __call__(self, frames: torch.Tensor, clips: Sequence[torch.Tensor]) -> torch.Tensor:
        resized = resize_short_side(to_tchw(frames), self.crop_size)
        num_frames, size = len(clips[0]), self.crop_size
        views = torch.empty(len(clips) * self.num_crops, resized.shape[1], num_frames, size, size, dtype=self.dtype)
        for k, clip in enumerate(clips):
            for s, crop in enumerate(spatial_crops(resized[clip], size, self.num_crops)):
                view = views[k * self.num_crops + s]
                if self.normalize:
                    normalize_into(view, channels_first(crop), self.mean, self.std)
                else:
                    view.copy_(crop.permute(1, 0, 2, 3))
        return views


class CentreViewTransform:
    """Validation transform: short side resized to ``crop_size``, centre square crop,
    normalised. uint8 (T, H, W, 3) -> float (C, T, S, S)."""

    def __init__(self, *, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.views = MultiViewTransform(crop_size=crop_size, num_crops=1, mean=mean, std=std)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.views(frames, [torch.arange(len(frames))])[0]
