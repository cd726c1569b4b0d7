"""Mask generators and the block-wise (hierarchical) masks of ConvMAE.

A mask is (N, L) over a token grid in raster order, 1 = masked, 0 = visible. Generators are
small callables ``generator(batch_size, grid, *, device, rng) -> (N, L)`` so a model or a
dataset can take any of them.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")


def _uniform_noise(shape: Sequence[int], device: Optional[torch.device],
                   rng: Optional[torch.Generator]) -> torch.Tensor:
    """``torch.rand(shape)`` from ``rng`` or the global generator. (torch.rand's overload with a
    ``generator`` argument, even None, takes no symbolic sizes: a compiled forward whose batch
    size became dynamic would fail there.)"""
    if rng is None:
        return torch.rand(*shape, device=device)
    return torch.rand(*shape, device=device, generator=rng)


def _masks_from_noise(noise: torch.Tensor, num_masked: int) -> torch.Tensor:
    """Per row, mask the ``num_masked`` positions of largest noise. (N, L) -> (N, L) float."""
    order = noise.argsort(dim=1)
    mask = torch.zeros_like(noise)
    mask.scatter_(1, order[:, noise.shape[1] - num_masked :], 1.0)
    return mask


def kept_tokens(num_tokens: int, ratio: float) -> int:
    """Tokens ``random_mask`` keeps visible: ``int(L * (1 - ratio))``."""
    return int(num_tokens * (1 - ratio))


def tube_kept_tokens(grid: Sequence[int], ratio: float) -> int:
    """Tokens ``tube_mask`` keeps visible on a (t, h, w) grid: ``t * (h*w - int(ratio * h*w))``."""
    t, h, w = grid
    return t * (h * w - int(ratio * h * w))


def random_mask(
    batch_size: int,
    num_tokens: int,
    ratio: float,
    *,
    device: Optional[torch.device] = None,
    rng: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """MAE random masking: per sample keep ``int(L * (1 - ratio))`` uniformly random tokens."""
    _check_ratio(ratio)
    noise = _uniform_noise((batch_size, num_tokens), device, rng)
    return _masks_from_noise(noise, num_tokens - kept_tokens(num_tokens, ratio))


def tube_mask(
    batch_size: int,
    grid: Sequence[int],
    ratio: float,
    *,
    device: Optional[torch.device] = None,
    rng: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """VideoMAE tube masking on a (t, h, w) grid: one spatial mask of ``int(ratio * h * w)``
    masked positions per sample, repeated at every temporal position. Returns (N, t*h*w)."""
    _check_ratio(ratio)
    t, h, w = grid
    noise = _uniform_noise((batch_size, h * w), device, rng)
    spatial = _masks_from_noise(noise, h * w - tube_kept_tokens((1, h, w), ratio))  # one count for both
    return spatial[:, None, :].expand(batch_size, t, h * w).reshape(batch_size, t * h * w)


class RandomMasking:
    """Random (MAE) masking over the whole token grid, any dimensionality.

    ``num_visible(grid, ratio)`` tells how many tokens every mask keeps, without drawing one:
    the model then needs no data-dependent count (``visible_indices``), which keeps a compiled
    forward in one graph.
    """

    def __init__(self, ratio: float = 0.75):
        _check_ratio(ratio)
        self.ratio = ratio

    def __call__(self, batch_size: int, grid: Sequence[int], *, ratio: Optional[float] = None,
                 device: Optional[torch.device] = None,
                 rng: Optional[torch.Generator] = None) -> torch.Tensor:
        ratio = self.ratio if ratio is None else ratio
        return random_mask(batch_size, math.prod(grid), ratio, device=device, rng=rng)

    def num_visible(self, grid: Sequence[int], ratio: Optional[float] = None) -> int:
        return kept_tokens(math.prod(grid), self.ratio if ratio is None else ratio)


class TubeMasking:
    """Tube masking on a (t, h, w) grid: the same spatial mask at every temporal position.
    ``num_visible`` as for ``RandomMasking``."""

    def __init__(self, ratio: float = 0.9):
        _check_ratio(ratio)
        self.ratio = ratio

    def __call__(self, batch_size: int, grid: Sequence[int], *, ratio: Optional[float] = None,
                 device: Optional[torch.device] = None,
                 rng: Optional[torch.Generator] = None) -> torch.Tensor:
        if len(grid) != 3:
            raise ValueError(f"tube masking needs a (t, h, w) grid, got {tuple(grid)}")
        ratio = self.ratio if ratio is None else ratio
        return tube_mask(batch_size, grid, ratio, device=device, rng=rng)

    def num_visible(self, grid: Sequence[int], ratio: Optional[float] = None) -> int:
        return tube_kept_tokens(grid, self.ratio if ratio is None else ratio)


def upsample_mask(mask: torch.Tensor, grid: Sequence[int], factor: Sequence[int]) -> torch.Tensor:
    """Nearest (block-wise) upsampling of an (N, prod(grid)) mask by ``factor`` per grid dim.

    Returns (N, *(grid * factor)): each token becomes a block of ``factor`` equal values.
    """
    n = mask.shape[0]
    out = mask.reshape(n, *grid)
    for dim, f in enumerate(factor):
        if f != 1:
            out = out.repeat_interleave(int(f), dim=dim + 1)
    return out


def block_wise_masks(
    mask: torch.Tensor, grid: Sequence[int], upsampling: Sequence[Sequence[int]]
) -> List[torch.Tensor]:
    """The masks of the earlier stages for a stage-3 mask (N, prod(grid)).

    ``upsampling[k]`` is the factor from the stage-3 grid to stage k's grid; returns one
    (N, *grid_k) mask per entry, so a stage-k position is masked iff its stage-3 token is.
    """
    return [upsample_mask(mask, grid, f) for f in upsampling]


def visible_indices(mask: torch.Tensor, num_visible: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices of the visible tokens and the permutation that restores the full order.

    ``mask``: (N, L), every row with the same number of visible tokens. Returns
    ``ids_keep`` (N, L_visible), visible tokens in raster order, and ``ids_restore`` (N, L)
    such that ``cat([visible, masked])`` gathered with it is back in raster order.
    ``num_visible``: L_visible when the caller knows it (a mask generator's count); otherwise it
    is read from the mask and checked (a host sync, and a graph break under ``torch.compile``).
    """
    ids_shuffle = torch.argsort(mask, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    if num_visible is None:
        num_visible = _common_visible_count(mask)
    return ids_shuffle[:, :num_visible], ids_restore


def _common_visible_count(mask: torch.Tensor) -> int:
    """The number of visible tokens of every row of ``mask`` (N, L); ValueError if rows differ."""
    num_visible = (mask == 0).sum(dim=1)
    if mask.numel() and not bool((num_visible == num_visible[0]).all()):
        raise ValueError(
            "every sample of a batch must have the same number of visible tokens, got "
            f"{num_visible.tolist()}"
        )
    return int(num_visible[0]) if mask.numel() else 0


def check_mask(mask: torch.Tensor, batch_size: int, num_tokens: int) -> torch.Tensor:
    """Validate a user-given mask (N, L) of 0/1 values and return it as float."""
    if tuple(mask.shape) != (batch_size, num_tokens):
        raise ValueError(
            f"mask must have shape (N, L) = ({batch_size}, {num_tokens}), got {tuple(mask.shape)}"
        )
    mask = mask.float()
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask values must be 0 (visible) or 1 (masked)")
    return mask
