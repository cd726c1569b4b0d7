"""Conv blocks, patch embeddings and transformer blocks for 2D (images) and 3D (videos).

Tensors of the conv stages are kept channels-last, ``(N, *grid, C)``: LayerNorm and the 1x1
convolutions are then plain matrix products over the last dim, and the depthwise conv sees a
channels-last strided tensor (the fast layout on CPU). The modules still own ``nn.ConvNd``
parameters so that official ConvMAE checkpoints load with their exact names and shapes.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath, register_notrace_module
from timm.models.vision_transformer import Block
from torch import nn

from common.layers.sparse_conv import visible_depthwise

# Official ConvMAE: the default LayerNorm eps in the conv stages, 1e-6 in stage 3 and decoder.
CONV_STAGE_NORM = nn.LayerNorm
TRANSFORMER_NORM = partial(nn.LayerNorm, eps=1e-6)


def conv_nd(ndim: int) -> type:
    """The ``nn.Conv2d`` / ``nn.Conv3d`` class for ``ndim`` spatial dimensions."""
    if ndim == 2:
        return nn.Conv2d
    if ndim == 3:
        return nn.Conv3d
    raise ValueError(f"ndim must be 2 (images) or 3 (videos), got {ndim}")


def to_blocks(x: torch.Tensor, block: Sequence[int]) -> torch.Tensor:
    """Cut a channels-last grid into non-overlapping blocks.

    ``x``: (N, *grid, C) with every grid dim divisible by ``block``.
    Returns (N, *grid // block, *block, C).
    """
    ndim = len(block)
    n, *grid, c = x.shape
    if len(grid) != ndim:
        raise ValueError(f"expected {ndim} grid dims, got tensor of shape {tuple(x.shape)}")
    split = []
    for size, b in zip(grid, block):
        if size % b:
            raise ValueError(f"grid {tuple(grid)} is not divisible by block {tuple(block)}")
        split += [size // b, b]
    x = x.reshape(n, *split, c)
    outer = [1 + 2 * i for i in range(ndim)]
    inner = [2 + 2 * i for i in range(ndim)]
    return x.permute(0, *outer, *inner, 1 + 2 * ndim)


def _channels_last_weight(conv: nn.Module) -> torch.Tensor:
    """Conv weight (out, in, *k) reordered to a Linear weight (out, prod(k) * in), (k, in) order."""
    w = conv.weight
    return w.permute(0, *range(2, w.dim()), 1).reshape(w.shape[0], -1)


def blockwise_conv(conv: nn.Module, blocks: torch.Tensor) -> torch.Tensor:
    """Apply a stride == kernel ``ConvNd`` to channels-last blocks as one matrix product.

    ``blocks``: (..., *kernel, C_in) -> (..., C_out). Exactly the conv's output at those
    blocks, so it runs on the whole grid (``to_blocks`` first) or on any subset of blocks.
    """
    kernel_dims = conv.weight.dim() - 2
    flat = blocks.flatten(-kernel_dims - 1)
    return F.linear(flat, _channels_last_weight(conv), conv.bias)


def strided_conv(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A stride == kernel ``ConvNd`` on a channels-last grid (N, *grid, C_in) -> (N, *grid / k, C_out)."""
    return blockwise_conv(conv, to_blocks(x, conv.kernel_size))


@register_notrace_module  # a leaf for torch.fx: ``to_blocks`` unpacks the input shape
class PatchEmbed(nn.Module):
    """Stage embedding: stride == kernel conv, LayerNorm, GELU (official ``PatchEmbed``).

    Input and output are channels-last: (N, *grid, C_in) -> (N, *grid // patch, C_out).
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: Sequence[int]):
        super().__init__()
        self.patch_size = tuple(int(p) for p in patch_size)
        self.proj = conv_nd(len(self.patch_size))(
            in_chans, embed_dim, self.patch_size, stride=self.patch_size
        )
        self.norm = CONV_STAGE_NORM(embed_dim)
        self.act = nn.GELU()

    def forward_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """``blocks``: (..., *patch, C_in) -> (..., C_out); any subset of blocks."""
        return self.act(self.norm(blockwise_conv(self.proj, blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_blocks(to_blocks(x, self.patch_size))


def _pointwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1x1(x1) conv on a channels-last tensor (..., C_in) -> (..., C_out)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class ConvMlp(nn.Module):
    """The conv blocks' MLP: 1x1 conv, GELU, 1x1 conv (official ``CMlp``), channels-last."""

    def __init__(self, dim: int, hidden_dim: int, ndim: int, drop: float = 0.0):
        super().__init__()
        conv = conv_nd(ndim)
        self.fc1 = conv(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = conv(hidden_dim, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(_pointwise(self.fc1, x)))
        return self.drop(_pointwise(self.fc2, x))


class ConvBlock(nn.Module):
    """ConvMAE's "CBlock": a transformer block whose attention is a depthwise conv.

    ``x = x + DropPath(conv2(dw(visible * conv1(LN(x)))))``;
    ``x = x + DropPath(MLP(LN(x)))``. With ``visible`` given (1 = visible, 0 = masked) masked
    positions enter the depthwise conv as zeros (the masked convolution), so nothing of them
    leaks into visible positions. ``x``: (N, *grid, C) channels-last.
    """

    def __init__(
        self,
        dim: int,
        *,
        ndim: int,
        mlp_ratio: float = 4.0,
        kernel_size: Sequence[int] | int = 5,
        drop_path: float = 0.0,
        drop: float = 0.0,
    ):
        super().__init__()
        kernel = (kernel_size,) * ndim if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(kernel) != ndim or any(k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size must be {ndim} odd sizes, got {kernel_size}")
        conv = conv_nd(ndim)
        self.kernel_size = kernel
        self.norm1 = CONV_STAGE_NORM(dim)
        self.conv1 = conv(dim, dim, 1)
        self.attn = conv(dim, dim, kernel, padding=tuple(k // 2 for k in kernel), groups=dim)
        self.conv2 = conv(dim, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = CONV_STAGE_NORM(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), ndim, drop)

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise conv on a channels-last grid (N, *grid, C) -> (N, *grid, C)."""
        return self.attn(x.movedim(-1, 1)).movedim(1, -1)

    def forward(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = _pointwise(self.conv1, self.norm1(x))
        if visible is not None:
            y = y * visible
        y = _pointwise(self.conv2, self.depthwise(y))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward_visible(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The masked block on visible blocks only (the sparse path of pretraining).

        ``x``: (N, L_visible, *block, C), the visible blocks of a block-wise mask (masked
        positions are implicitly zero); ``rows``: their ``window_rows``. Equal to ``forward``
        with the visibility map at the visible positions.
        """
        y = _pointwise(self.conv1, self.norm1(x))
        y = visible_depthwise(self.attn, y.flatten(0, 1), rows).reshape(y.shape)
        x = x + self.drop_path(_pointwise(self.conv2, y))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def transformer_block(
    dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0
) -> nn.Module:
    """Pre-norm ViT block (timm's, attention via ``scaled_dot_product_attention``).

    qkv bias on and LayerNorm eps 1e-6 as in ConvMAE; parameter names ``norm1``,
    ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2`` match the official ones.
    """
    return Block(
        dim,
        num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        drop_path=drop_path,
        norm_layer=TRANSFORMER_NORM,
    )


def grid_after(size: Sequence[int], stride: Sequence[int]) -> Tuple[int, ...]:
    """Grid shape after a stride == kernel embedding; sizes must divide exactly."""
    if any(s % k for s, k in zip(size, stride)):
        raise ValueError(f"size {tuple(size)} is not divisible by stride {tuple(stride)}")
    return tuple(s // k for s, k in zip(size, stride))
