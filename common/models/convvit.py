"""The ConvMAE encoder ("ConvViT") for any dimensionality, and its classifier.

Three stages: two of masked conv blocks on fine grids, one of transformer blocks on the
coarsest grid. Images are (N, C, H, W), videos (N, C, T, H, W); every grid is derived from
``input_size`` and ``stage_strides``. Conv-stage tensors are channels-last (N, *grid, C).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from common.layers import ConvBlock, PatchEmbed, grid_after, transformer_block
from common.layers.blocks import TRANSFORMER_NORM
from common.pos_embed import sincos_pos_embed


def _three(name: str, value) -> Tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3
    if len(values) != 3:
        raise ValueError(f"{name} must have one value per stage (3), got {value!r}")
    return values


class ConvViTBackbone(nn.Module):
    """Stages 1-3 of ConvMAE (official parameter names), without pooling, head or decoder.

    Args:
        input_size: (H, W) for images or (T, H, W) for videos.
        stage_strides: the three embeddings' kernel == stride, e.g. ((4, 4), (2, 2), (2, 2))
            for images or ((2, 4, 4), (1, 2, 2), (1, 2, 2)) for videos.
        embed_dim, depth, mlp_ratio: per stage (C1-C3, L1-L3, P1-P3).
        num_heads: attention heads of stage 3.
        dw_kernel_size: depthwise kernel of the conv blocks (int or one size per dim).
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        use_checkpoint: activation checkpointing of the stage-3 blocks.
    """

    def __init__(
        self,
        *,
        input_size: Sequence[int],
        stage_strides: Sequence[Sequence[int]],
        in_chans: int = 3,
        embed_dim: Sequence[int] = (256, 384, 768),
        depth: Sequence[int] = (2, 2, 11),
        mlp_ratio: Sequence[float] = (4.0, 4.0, 4.0),
        num_heads: int = 12,
        dw_kernel_size: int | Sequence[int] = 5,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.input_size = tuple(int(s) for s in input_size)
        self.ndim = len(self.input_size)
        self.stage_strides = tuple(tuple(int(k) for k in s) for s in _three("stage_strides", stage_strides))
        if any(len(s) != self.ndim for s in self.stage_strides):
            raise ValueError(f"stage_strides {self.stage_strides} must each have {self.ndim} dims")
        self.patch_size = tuple(math.prod(s[d] for s in self.stage_strides) for d in range(self.ndim))
        if any(size % p for size, p in zip(self.input_size, self.patch_size)):
            raise ValueError(
                f"input size {self.input_size} must be divisible by the model's total stride "
                f"{self.patch_size}"
            )
        embed_dim, depth, mlp_ratio = (
            _three("embed_dim", embed_dim), _three("depth", depth), _three("mlp_ratio", mlp_ratio)
        )
        if embed_dim[2] % num_heads:
            raise ValueError(f"embed_dim[2]={embed_dim[2]} is not divisible by num_heads={num_heads}")
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.use_checkpoint = use_checkpoint

        g1 = grid_after(self.input_size, self.stage_strides[0])
        g2 = grid_after(g1, self.stage_strides[1])
        g3 = grid_after(g2, self.stage_strides[2])
        self.grids = (g1, g2, g3)
        self.grid = g3
        self.num_patches = math.prod(g3)

        self.patch_embed1 = PatchEmbed(in_chans, embed_dim[0], self.stage_strides[0])
        self.patch_embed2 = PatchEmbed(embed_dim[0], embed_dim[1], self.stage_strides[1])
        self.patch_embed3 = PatchEmbed(embed_dim[1], embed_dim[2], self.stage_strides[2])
        self.patch_embed4 = nn.Linear(embed_dim[2], embed_dim[2])

        total = sum(depth)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        rates1, rates2, rates3 = rates[: depth[0]], rates[depth[0] : depth[0] + depth[1]], rates[depth[0] + depth[1] :]
        self.blocks1 = nn.ModuleList(
            ConvBlock(embed_dim[0], ndim=self.ndim, mlp_ratio=mlp_ratio[0],
                      kernel_size=dw_kernel_size, drop_path=r)
            for r in rates1
        )
        self.blocks2 = nn.ModuleList(
            ConvBlock(embed_dim[1], ndim=self.ndim, mlp_ratio=mlp_ratio[1],
                      kernel_size=dw_kernel_size, drop_path=r)
            for r in rates2
        )
        self.blocks3 = nn.ModuleList(
            transformer_block(embed_dim[2], num_heads, mlp_ratio[2], drop_path=r) for r in rates3
        )

    def fixed_pos_embed(self, dim: int) -> torch.Tensor:
        """(1, L, dim) sin-cos embedding of the stage-3 grid."""
        return sincos_pos_embed(dim, self.grid)

    def to_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """Check an input (N, C, *input_size) and return it as (N, *input_size, C)."""
        expected = (self.in_chans, *self.input_size)
        if x.dim() != self.ndim + 2 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input of shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return x.movedim(1, -1)

    def forward_conv_stages(
        self,
        x: torch.Tensor,
        visible1: Optional[torch.Tensor] = None,
        visible2: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stages 1-2 and the stage-3 embedding.

        ``x``: (N, C, *input_size); ``visible1``/``visible2``: (N, *grid_k, 1) with 1 at visible
        positions, or None (no masked convolution). Returns the stage-1 and stage-2 outputs
        (N, *grid_k, C_k) and the stage-3 tokens (N, L, C3) before the position embedding.
        """
        x1 = self.patch_embed1(self.to_channels_last(x))
        for blk in self.blocks1:
            x1 = blk(x1, visible1)
        x2 = self.patch_embed2(x1)
        for blk in self.blocks2:
            x2 = blk(x2, visible2)
        tokens = self.patch_embed4(self.patch_embed3(x2).flatten(1, -2))
        return x1, x2, tokens

    def forward_stage3(self, tokens: torch.Tensor) -> torch.Tensor:
        """The transformer blocks on (N, L', C3) tokens."""
        for blk in self.blocks3:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                tokens = checkpoint(blk, tokens, use_reentrant=False)
            else:
                tokens = blk(tokens)
        return tokens


class ConvViT(ConvViTBackbone):
    """ConvMAE classifier: encoder, global average pool, ``fc_norm``, Linear ``head``.

    The position embedding is learnable, initialised with the fixed sin-cos one. With
    ``global_pool=False`` the tokens are normalised by ``norm`` before pooling instead.
    """

    def __init__(self, *, num_classes: int = 1000, global_pool: bool = True,
                 head_drop_rate: float = 0.0, **backbone_kwargs):
        super().__init__(**backbone_kwargs)
        dim = self.embed_dim[2]
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.pos_embed = nn.Parameter(self.fixed_pos_embed(dim))
        if global_pool:
            self.fc_norm = TRANSFORMER_NORM(dim)
        else:
            self.norm = TRANSFORMER_NORM(dim)
        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_finetune_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *input_size) -> pooled, normalised features (N, C3)."""
        _, _, tokens = self.forward_conv_stages(x)
        tokens = self.forward_stage3(tokens + self.pos_embed)
        if self.global_pool:
            return self.fc_norm(tokens.mean(dim=1))
        return self.norm(tokens).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(self.forward_features(x)))


def _init_finetune_weights(module: nn.Module) -> None:
    """Official finetuning init: trunc-normal(0.02) Linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
