"""Pixel targets of the masked autoencoder: patchify/unpatchify and the masked MSE loss."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from common.layers import to_blocks


def patchify(x: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """(N, C, *size) -> (N, L, prod(patch) * C), patches in raster order, pixels (*patch, c).

    Images: (N, 3, H, W) with patch (16, 16) -> (N, H/16 * W/16, 768) in MAE's (p, q, c) order.
    Videos: (N, 3, T, H, W) with patch (2, 16, 16) -> tubes in (t, h, w) order, (p0, p1, p2, c).
    """
    blocks = to_blocks(x.movedim(1, -1), patch_size)
    n = x.shape[0]
    return blocks.reshape(n, -1, math.prod(patch_size) * x.shape[1])


def unpatchify(
    patches: torch.Tensor, patch_size: Sequence[int], grid: Sequence[int], channels: int = 3
) -> torch.Tensor:
    """Inverse of ``patchify``: (N, L, prod(patch) * C) -> (N, C, *(grid * patch))."""
    ndim = len(grid)
    n = patches.shape[0]
    x = patches.reshape(n, *grid, *patch_size, channels)
    order = [0]
    for i in range(ndim):
        order += [1 + i, 1 + ndim + i]
    x = x.permute(*order, 1 + 2 * ndim)
    size = [g * p for g, p in zip(grid, patch_size)]
    return x.reshape(n, *size, channels).movedim(-1, 1)


def normalize_patches(patches: torch.Tensor, channels: int, per_channel: bool) -> torch.Tensor:
    """Normalise each target patch by its own statistics (``norm_pix_loss``).

    ``per_channel=False`` (MAE images): mean and unbiased variance over all values,
    ``(t - mean) / sqrt(var + 1e-6)``. ``per_channel=True`` (VideoMAE tubes): statistics per
    channel over the pixels of the tube, ``(t - mean) / (std + 1e-6)``. A flat patch gives 0.
    """
    if not per_channel:
        centred, _, var = _patch_statistics(patches, dim=-1)
        return centred / (var + 1.0e-6) ** 0.5
    pixels = patches.reshape(*patches.shape[:-1], -1, channels)
    centred, _, var = _patch_statistics(pixels, dim=-2)
    return (centred / (var.sqrt() + 1.0e-6)).flatten(-2)


def denormalize_patches(
    normalized: torch.Tensor, raw: torch.Tensor, channels: int, per_channel: bool
) -> torch.Tensor:
    """Inverse of ``normalize_patches``, using the statistics of the raw patches ``raw``.

    Turns norm-pix predictions (N, L, P) back into pixel units, e.g. for pictures.
    """
    if not per_channel:
        _, mean, var = _patch_statistics(raw, dim=-1)
        return normalized * (var + 1.0e-6) ** 0.5 + mean
    pixels = raw.reshape(*raw.shape[:-1], -1, channels)
    _, mean, var = _patch_statistics(pixels, dim=-2)
    return (normalized.reshape(pixels.shape) * (var.sqrt() + 1.0e-6) + mean).flatten(-2)


def _patch_statistics(values: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``values`` minus their mean along ``dim``, the mean and the unbiased variance, computed about
    the first value (shifted data): a flat patch gives exact zeros. A plain float32 mean is off by
    a rounding error that the tiny denominator of a flat patch blows up to targets of about 1."""
    reference = values.narrow(dim, 0, 1)
    shifted = values - reference
    offset = shifted.mean(dim=dim, keepdim=True)
    return shifted - offset, reference + offset, shifted.var(dim=dim, keepdim=True)


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Mean squared error weighted per patch (N, L) or per value (N, L, P).

    With a 0/1 (N, L) mask this is MAE's loss on the masked patches only.
    """
    err = (pred.float() - target.float()) ** 2
    if weight.dim() == 2:
        return (err.mean(dim=-1) * weight).sum() / weight.sum().clamp_min(1.0)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def reconstruction_targets(
    x: torch.Tensor, patch_size: Sequence[int], norm_pix: bool, per_channel: Optional[bool] = None
) -> torch.Tensor:
    """Targets (N, L, prod(patch) * C) for input ``x`` (N, C, *size).

    ``per_channel`` defaults to True for videos (3 patch dims), False for images.
    """
    target = patchify(x, patch_size)
    if not norm_pix:
        return target
    if per_channel is None:
        per_channel = len(patch_size) == 3
    return normalize_patches(target, x.shape[1], per_channel)
