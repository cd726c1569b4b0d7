"""Fixed sin-cos position embeddings (2D and separable spatio-temporal) and their resizing."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, dim): ``[sin(p * w_k), cos(p * w_k)]`` with w_k = 10000^(-k/(dim/2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64).reshape(-1, 1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid: Sequence[int]) -> torch.Tensor:
    """(h * w, dim) embedding of an (h, w) grid in raster order.

    As in MAE, the first half of the channels encodes the column (w) index and the second
    half the row (h) index, so the fixed embeddings match official checkpoints.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding dim must be divisible by 4, got {dim}")
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    return emb.float()


def sincos_3d(dim: int, grid: Sequence[int]) -> torch.Tensor:
    """(t * h * w, dim) separable embedding of a (t, h, w) grid in raster order.

    A quarter of the channels encodes t, the rest (h, w) with ``sincos_2d``.
    """
    if dim % 8:
        raise ValueError(f"3D sin-cos embedding dim must be divisible by 8, got {dim}")
    t, h, w = grid
    dim_t = dim // 4
    emb_t = sincos_1d(dim_t, torch.arange(t)).float()
    emb_hw = sincos_2d(dim - dim_t, (h, w))
    emb_t = emb_t[:, None, :].expand(t, h * w, dim_t)
    emb_hw = emb_hw[None].expand(t, h * w, dim - dim_t)
    return torch.cat([emb_t, emb_hw], dim=-1).reshape(t * h * w, dim)


def sincos_pos_embed(dim: int, grid: Sequence[int]) -> torch.Tensor:
    """(1, prod(grid), dim) fixed embedding for a 2D or 3D grid."""
    if len(grid) == 2:
        return sincos_2d(dim, grid)[None]
    if len(grid) == 3:
        return sincos_3d(dim, grid)[None]
    raise ValueError(f"grid must have 2 or 3 dims, got {tuple(grid)}")


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int]
) -> torch.Tensor:
    """Interpolate a (1, prod(old_grid), C) embedding to ``new_grid`` (bicubic 2D, trilinear 3D)."""
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if pos_embed.shape[1] != math.prod(old_grid):
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} positions, grid {old_grid} needs {math.prod(old_grid)}"
        )
    if old_grid == new_grid:
        return pos_embed
    c = pos_embed.shape[-1]
    x = pos_embed.reshape(1, *old_grid, c).movedim(-1, 1).float()
    mode = {2: "bicubic", 3: "trilinear"}[len(old_grid)]
    x = F.interpolate(x, size=new_grid, mode=mode, align_corners=False)
    return x.movedim(1, -1).reshape(1, -1, c).to(pos_embed.dtype)


def infer_source_grid(num_positions: int, target_grid: Sequence[int]) -> Tuple[int, ...]:
    """Guess the grid a checkpoint's embedding of ``num_positions`` was made for.

    Tries, in order: the target grid itself; a square spatial grid with the target's
    temporal length (video) or alone (image); the target's spatial grid with another
    temporal length. Raises if none fits (pass the grid explicitly then).
    """
    target_grid = tuple(target_grid)
    if num_positions == math.prod(target_grid):
        return target_grid
    lead = target_grid[:-2]
    spatial = num_positions // math.prod(lead) if lead else num_positions
    side = math.isqrt(spatial)
    if side * side == spatial and spatial * math.prod(lead) == num_positions:
        return (*lead, side, side)
    if len(target_grid) == 3 and num_positions % math.prod(target_grid[1:]) == 0:
        return (num_positions // math.prod(target_grid[1:]), *target_grid[1:])
    raise ValueError(
        f"cannot infer the grid of a position embedding with {num_positions} positions for "
        f"target grid {target_grid}; pass source_grid explicitly"
    )
