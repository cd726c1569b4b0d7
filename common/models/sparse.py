"""Visible-only ("sparse") execution of ConvMAE's conv stages under block-wise masks.

With block-wise masking a visible stage-3 token reads exactly one block of the input and of
every stage grid (the embeddings and the SC convs are stride == kernel convs), and masked
positions enter the depthwise convs as zeros. So stages 1-2 only need the visible blocks:
each stage is kept as ``(N, L_visible, *block, C)`` (block = the stage-k positions under
one stage-3 token), LayerNorm, 1x1 convs and MLPs run on those rows, and the depthwise conv
runs on windows of the visible blocks (``common.layers.sparse_conv``). The results equal
the dense masked path (``ConvViTBackbone.forward_conv_stages`` with visibility maps) at the
visible tokens.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from common.layers import PatchEmbed, blockwise_conv, to_blocks, window_rows
from common.models.convvit import ConvViTBackbone


def token_coords(ids_keep: torch.Tensor, grid: Sequence[int]) -> Tuple[torch.Tensor, ...]:
    """Per grid dim, the coordinates (N, L_visible) of raster indices ``ids_keep`` (N, L_visible)."""
    return torch.unravel_index(ids_keep, tuple(grid))


def gather_input_blocks(x: torch.Tensor, patch: Sequence[int], coords: Sequence[torch.Tensor]) -> torch.Tensor:
    """The input patches of the visible tokens: (N, *input, C) -> (N, L_visible, *patch, C)."""
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    return to_blocks(x, patch)[(batch, *coords)]


def embed_blocks(embed: PatchEmbed, x: torch.Tensor) -> torch.Tensor:
    """A stage embedding inside every visible block: (N, L, *block, C) -> (N, L, *block / stride, C')."""
    n, num_visible = x.shape[:2]
    out = embed.forward_blocks(to_blocks(x.flatten(0, 1), embed.patch_size))
    return out.unflatten(0, (n, num_visible))


def run_visible_stage(
    blocks: nn.ModuleList, x: torch.Tensor, coords: Sequence[torch.Tensor], grid: Sequence[int]
) -> torch.Tensor:
    """Conv blocks on visible blocks (N, L_visible, *block, C); ``grid`` is the stage-3 grid."""
    if len(blocks) == 0:
        return x
    with torch.no_grad():
        rows = window_rows(coords, grid, x.shape[2:-1], blocks[0].kernel_size)
    for blk in blocks:
        x = blk.forward_visible(x, rows)
    return x


def visible_conv_stages(
    backbone: ConvViTBackbone, x: torch.Tensor, ids_keep: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stages 1-2 and the stage-3 embedding at the visible tokens only.

    ``x``: (N, C, *input_size); ``ids_keep``: (N, L_visible) visible stage-3 tokens.
    Returns the stage-1 and stage-2 outputs as (N, L_visible, *block_k, C_k) and the
    stage-3 tokens (N, L_visible, C3) before the position embedding.
    """
    coords = token_coords(ids_keep, backbone.grid)
    patches = gather_input_blocks(backbone.to_channels_last(x), backbone.patch_size, coords)
    x1 = run_visible_stage(backbone.blocks1, embed_blocks(backbone.patch_embed1, patches), coords, backbone.grid)
    x2 = run_visible_stage(backbone.blocks2, embed_blocks(backbone.patch_embed2, x1), coords, backbone.grid)
    tokens = embed_blocks(backbone.patch_embed3, x2).flatten(1, -2)  # stage-3 blocks are 1 token
    return x1, x2, backbone.patch_embed4(tokens)


def visible_multi_scale(
    sc1: nn.Module, sc2: nn.Module, x1: torch.Tensor, x2: torch.Tensor
) -> torch.Tensor:
    """SC(E1) + SC(E2) at the visible tokens: blocks (N, L_visible, *block_k, C_k) -> (N, L_visible, C3)."""
    return blockwise_conv(sc1, x1) + blockwise_conv(sc2, x2)
