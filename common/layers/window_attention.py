"""Stage-3 attention of the dense-prediction backbone (ConvMAE paper §2.3, DESIGN.md §7).

For detection, most stage-3 blocks attend inside (alternately shifted) windows and all blocks
add a learnable relative position bias, one table shared by the global blocks and one by the
local blocks. The blocks stay timm ``Block`` modules with the pretrained parameter names; only
the token mixing around their ``attn.qkv``/``attn.proj`` changes, so a pretraining or
finetuning checkpoint loads with just the new tables missing. Attention runs through
``scaled_dot_product_attention`` with bias and window mask as one float ``attn_mask``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# The global blocks of ConvMAE-B's 11 stage-3 blocks (1st, 4th, 7th, 11th) as fractions of the
# last block index; other depths scale the pattern (e.g. 0, 7, 13, 22 for 23 blocks).
GLOBAL_BLOCK_FRACTIONS = (0, 3, 6, 10)


def default_global_blocks(depth: int) -> Tuple[int, ...]:
    """Indices of the global-attention blocks for a stage 3 of ``depth`` blocks."""
    last = GLOBAL_BLOCK_FRACTIONS[-1]
    return tuple(sorted({round(f * (depth - 1) / last) for f in GLOBAL_BLOCK_FRACTIONS}))


def relative_position_index(window: Sequence[int]) -> torch.Tensor:
    """(T, T) index into a ((2h-1) * (2w-1))-row table for every query/key pair of an (h, w) window."""
    h, w = window
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1)


class RelativePositionBias(nn.Module):
    """A learnable relative position bias for an (h, w) window: (heads, T, T), T = h * w.

    The table starts at zero, so blocks loaded from a model without it behave exactly as
    before. Asked for another window (a global grid of another input size), the table is
    resized bicubically, as detection backbones do when the resolution changes.
    """

    def __init__(self, window: Sequence[int], num_heads: int):
        super().__init__()
        self.window = tuple(int(s) for s in window)
        h, w = self.window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), num_heads))

    def forward(self, window: Sequence[int]) -> torch.Tensor:
        h, w = window
        table = self.relative_position_bias_table
        if (h, w) != self.window:
            heads = table.shape[1]
            grid = table.T.reshape(1, heads, 2 * self.window[0] - 1, 2 * self.window[1] - 1)
            grid = F.interpolate(grid, size=(2 * h - 1, 2 * w - 1), mode="bicubic", align_corners=False)
            table = grid.reshape(heads, -1).T
        index = relative_position_index((h, w)).to(table.device)
        return table[index.reshape(-1)].reshape(h * w, h * w, -1).permute(2, 0, 1)


def _attend(attn: nn.Module, qkv: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """Multi-head SDPA of (B, T, 3 * attn_dim) projections -> (B, T, attn_dim), before ``proj``."""
    b, t, _ = qkv.shape
    q, k, v = qkv.reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask.to(q.dtype), dropout_p=attn.attn_drop.p if attn.training else 0.0
    )
    return out.transpose(1, 2).reshape(b, t, attn.attn_dim)


def _project(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return attn.proj_drop(attn.proj(attn.norm(x)))


def attention(attn: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """timm ``Attention`` on (B, T, C) with a float ``attn_mask`` broadcastable to (B, heads, T, T)."""
    return _project(attn, _attend(attn, attn.qkv(x), attn_mask))


def block_with_mixer(block: nn.Module, x: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """A timm ``Block`` whose attention is replaced by ``mix`` (same norms, MLP, drop path)."""
    x = x + block.drop_path1(block.ls1(mix(block.norm1(x))))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def window_labels(grid: Sequence[int], window: int, shift: int) -> torch.Tensor:
    """(Hp, Wp) labels of the padded, rolled grid; tokens attend only to tokens of their label.

    A token's label combines, per axis, whether it wrapped round in the roll, is real, or is
    padding, so no window mixes tokens that are not neighbours in the image, and padding is
    never attended to by real tokens (each token still sees itself, so no row is all masked).
    """
    labels = []
    for size in grid:
        padded = math.ceil(size / window) * window
        pos = torch.arange(padded)
        axis = torch.where(pos < shift, 0, torch.where(pos < size, 1, 2))
        labels.append(torch.roll(axis, -shift))
    return labels[0][:, None] * 3 + labels[1][None, :]


def partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, Hp, Wp, C) -> (N * windows, window * window, C), windows in raster order."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c)


def unpartition(x: torch.Tensor, window: int, n: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``partition`` back to (N, Hp, Wp, C)."""
    c = x.shape[-1]
    x = x.reshape(n, h // window, w // window, window, window, c).transpose(2, 3)
    return x.reshape(n, h, w, c)


def window_attention(
    attn: nn.Module, x: torch.Tensor, grid: Sequence[int], window: int, shift: int, bias: torch.Tensor
) -> torch.Tensor:
    """Attention inside ``window`` x ``window`` windows of the (N, H*W, C) tokens of ``grid``.

    The q/k/v projections are zero-padded to whole windows and rolled by ``-shift`` (Swin's
    cyclic shift); ``bias`` (heads, T, T) is added inside every window, and pairs of different
    ``window_labels`` are masked out. The projections run on the real tokens only.
    """
    n, _, c = x.shape
    h, w = grid
    hp, wp = math.ceil(h / window) * window, math.ceil(w / window) * window
    qkv = attn.qkv(x)
    qkv = F.pad(qkv.reshape(n, h, w, qkv.shape[-1]), (0, 0, 0, wp - w, 0, hp - h))
    if shift:
        qkv = torch.roll(qkv, (-shift, -shift), dims=(1, 2))
    labels = partition(window_labels(grid, window, shift).to(x.device)[None, ..., None], window)[..., 0]
    allowed = labels[:, :, None] == labels[:, None, :]
    mask = bias[None] + torch.zeros_like(allowed, dtype=bias.dtype).masked_fill(~allowed, float("-inf"))[:, None]
    mask = mask.repeat(n, 1, 1, 1)  # (N * windows, heads, T, T), matching the windows' order
    out = unpartition(_attend(attn, partition(qkv, window), mask), window, n, hp, wp)
    if shift:
        out = torch.roll(out, (shift, shift), dims=(1, 2))
    return _project(attn, out[:, :h, :w].reshape(n, h * w, -1))
