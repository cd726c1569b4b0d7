"""The ConvMAE encoder ("ConvViT") for any dimensionality, and its classifier.

Three stages: two of masked conv blocks on fine grids, one of transformer blocks on the
coarsest grid. Images are (N, C, H, W), videos (N, C, T, H, W); every grid is derived from
``input_size`` and ``stage_strides``. Conv-stage tensors are channels-last (N, *grid, C).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
from timm.layers import register_notrace_function
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from common.layers import ConvBlock, PatchEmbed, grid_after, transformer_block
from common.layers.blocks import TRANSFORMER_NORM
from common.layers.window_attention import (
    RelativePositionBias,
    attention,
    block_with_mixer,
    default_global_blocks,
    window_attention,
)
from common.pos_embed import resize_pos_embed, sincos_pos_embed


@register_notrace_function  # a leaf for torch.fx: shape checks cannot be traced symbolically
def check_input_shape(x: torch.Tensor, in_chans: int, size: Sequence[int], multiple: Sequence[int]) -> None:
    """Raise unless ``x`` is (N, in_chans, *size), or with ``size`` empty, (N, in_chans, *s) with
    every s a multiple of ``multiple``."""
    ndim = len(multiple)
    spatial = tuple(x.shape[2:])
    ok = x.dim() == ndim + 2 and x.shape[1] == in_chans
    if size:
        ok = ok and spatial == tuple(size)
        expected = f"(N, {in_chans}, {', '.join(map(str, size))})"
    else:
        ok = ok and all(s % m == 0 and s > 0 for s, m in zip(spatial, multiple))
        expected = f"(N, {in_chans}, ...) with {ndim} sizes that are multiples of {tuple(multiple)}"
    if not ok:
        raise ValueError(f"expected input of shape {expected}, got {tuple(x.shape)}")


# timm's pooling names the classifier implements: average, or none (the unpooled map).
POOL_TYPES = ("avg", "")


def check_pooling(num_classes: int, global_pool: str) -> None:
    """Raise unless ``global_pool`` is one of ``POOL_TYPES`` and fits ``num_classes``: a Linear
    head classifies pooled features, so no pooling means no head."""
    if global_pool not in POOL_TYPES:
        raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
    if global_pool == "" and num_classes > 0:
        raise ValueError(f"global_pool='' (no pooling) needs num_classes=0, got num_classes={num_classes} "
                         "(pass global_pool='avg' for a classifier)")


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
        dynamic_img_size: accept any input whose sizes are multiples of the total stride
            (the position embedding is interpolated), not just ``input_size``.
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
        dynamic_img_size: bool = False,
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
        self.dynamic_img_size = dynamic_img_size

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
        size = () if self.dynamic_img_size else self.input_size
        check_input_shape(x, self.in_chans, size, self.patch_size)
        return x.movedim(1, -1)

    def stage3_grid(self, x: torch.Tensor) -> Tuple[int, ...]:
        """The stage-3 grid of input ``x``; ``self.grid`` unless ``dynamic_img_size``
        (so fixed-size models read no shapes and trace with torch.fx)."""
        if not self.dynamic_img_size:
            return self.grid
        return tuple(int(s) // p for s, p in zip(x.shape[2:], self.patch_size))

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this hook before compiling anything: one clear error instead
        # of a compiler trace from deep inside the layers.
        raise NotImplementedError(
            f"{type(self).__name__} does not support TorchScript (torch.jit.script is deprecated "
            "in PyTorch): export it with torch.export.export(model, (example_input,)) (tools/export.py "
            "writes .pt2 and ONNX files, see `python tools/export.py --help`) or compile it with "
            "torch.compile(model)"
        )

    # -- timm interface shared with the pretraining model ------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        """Parameter names kept out of weight decay besides 1-D ones (norms, biases)."""
        return {"pos_embed"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, object]:
        """timm's layer grouping: embeddings, pos embed and stages 1-2 are the stem (layer 0),
        ``blocks3.i`` is layer i + 1, everything else (norms, head) the last layer."""
        return {
            "stem": r"^pos_embed|^mask_token|^patch_embed|^blocks1\.|^blocks2\.",
            "blocks": r"^blocks3\.(\d+)" if not coarse else r"^blocks3",
        }

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.use_checkpoint = enable

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

    def run_block(self, block: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """One stage-3 block, activation-checkpointed when enabled and training."""
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, tokens, use_reentrant=False)
        return block(tokens)

    def forward_stage3(self, tokens: torch.Tensor) -> torch.Tensor:
        """The transformer blocks on (N, L', C3) tokens."""
        for blk in self.blocks3:
            tokens = self.run_block(blk, tokens)
        return tokens


class ConvViT(ConvViTBackbone):
    """ConvMAE classifier: encoder, global average pool, ``fc_norm``, Linear ``head``.

    The position embedding is learnable, initialised with the fixed sin-cos one.
    ``global_pool`` takes the official boolean or timm's pooling name:

    - ``True`` or ``"avg"``: average pool, then ``fc_norm`` (the official classifier);
    - ``False``: the tokens are normalised by ``norm`` before the average pool (the layout of
      the pretraining encoder's ``norm``);
    - ``""``: no pooling (timm's ``num_classes=0, global_pool=''``): ``forward`` returns
      ``forward_features``' unpooled map. The parameters keep the default layout (``fc_norm``,
      unused until pooling is switched back on by ``reset_classifier``), so a classifier's
      weights load into it by the same names.

    Implements timm's model interface (``forward_features`` gives the unpooled (N, C3, *grid)
    map, ``forward_head`` pools and classifies, ``forward_intermediates`` the multi-scale maps).

    Feature levels (``feature_info``): images E1-E4 at strides 4, 8, 16, 32 with channels
    C1, C2, C3, C3 (E4 = 2x2 max-pool of E3, paper §2.3); videos the stage-1/2/3 maps.

    Detection variant of stage 3 (images, ``window_size`` set): blocks not in
    ``global_blocks`` (default: 1st, 4th, 7th and 11th of 11, scaled for other depths) attend in
    ``window_size`` x ``window_size`` windows, every other one shifted by half a window
    (``window_shift``); all blocks add a relative position bias, one table shared by the global
    blocks and one by the local blocks.
    """

    def __init__(self, *, num_classes: int = 1000, global_pool: Union[bool, str] = True,
                 head_drop_rate: float = 0.0, window_size: Optional[int] = None,
                 global_blocks: Optional[Sequence[int]] = None, window_shift: bool = True,
                 **backbone_kwargs):
        if global_pool not in (True, False) + POOL_TYPES:
            raise ValueError(f"global_pool must be True, False, 'avg' or '', got {global_pool!r}")
        pooling = "" if global_pool == "" else "avg"
        check_pooling(num_classes, pooling)  # before the backbone is built (reset_classifier checks again)
        super().__init__(**backbone_kwargs)
        dim = self.embed_dim[2]
        self.num_features = self.head_hidden_size = dim
        self.use_fc_norm = global_pool in (True, "avg", "")
        self.pos_embed = nn.Parameter(self.fixed_pos_embed(dim))
        if self.use_fc_norm:
            self.fc_norm = TRANSFORMER_NORM(dim)
        else:
            self.norm = TRANSFORMER_NORM(dim)
        self.head_drop = nn.Dropout(head_drop_rate)
        self.reset_classifier(num_classes, pooling)
        self.feature_info = self._feature_info()
        if self.ndim == 2:
            self.pool4 = nn.MaxPool2d(2)
        self.window_size = window_size
        if window_size is not None:
            self._init_windows(window_size, global_blocks, window_shift)
        self.apply(_init_finetune_weights)

    def _feature_info(self) -> List[Dict[str, object]]:
        """timm's feature_info: channels, spatial reduction and module of every feature level."""
        reduction, info = 1, []
        for stage, (stride, dim) in enumerate(zip(self.stage_strides, self.embed_dim)):
            reduction *= stride[-1]
            info.append({"num_chs": dim, "reduction": reduction, "module": f"blocks{stage + 1}"})
        if self.ndim == 2:
            info.append({"num_chs": self.embed_dim[2], "reduction": reduction * 2, "module": "pool4"})
        return info

    def _init_windows(self, window_size: int, global_blocks: Optional[Sequence[int]], shift: bool) -> None:
        if self.ndim != 2:
            raise ValueError("window_size (window attention in stage 3) is for images (2D grids) only")
        depth = len(self.blocks3)
        self.global_blocks = tuple(default_global_blocks(depth) if global_blocks is None else global_blocks)
        if any(not 0 <= i < depth for i in self.global_blocks):
            raise ValueError(f"global_blocks {self.global_blocks} must be indices of the {depth} stage-3 blocks")
        heads = self.blocks3[0].attn.num_heads
        self.rel_pos_global = RelativePositionBias(self.grid, heads)
        self.rel_pos_local = RelativePositionBias((window_size, window_size), heads)
        local = [i for i in range(depth) if i not in self.global_blocks]
        # None: global block; else the shift of a local block (half a window, every other one).
        self.block_shifts: List[Optional[int]] = [None] * depth
        for k, i in enumerate(local):
            self.block_shifts[i] = window_size // 2 if shift and k % 2 else 0

    # -- stage 3 -----------------------------------------------------------------------------
    def pos_embed_for(self, grid: Tuple[int, ...]) -> torch.Tensor:
        """The position embedding, interpolated when ``grid`` is not the model's own."""
        if tuple(grid) == tuple(self.grid):
            return self.pos_embed
        return resize_pos_embed(self.pos_embed, self.grid, grid)

    def forward_stage3_grid(self, tokens: torch.Tensor, grid: Tuple[int, ...]) -> torch.Tensor:
        """Stage 3 on all (N, L, C3) tokens of ``grid`` (global, or the detection variant)."""
        if self.window_size is None:
            return self.forward_stage3(tokens)
        global_bias = self.rel_pos_global(grid)
        local_bias = self.rel_pos_local((self.window_size, self.window_size))
        for blk, shift in zip(self.blocks3, self.block_shifts):
            if shift is None:
                mix = partial(attention, blk.attn, attn_mask=global_bias)
            else:
                mix = partial(window_attention, blk.attn, grid=grid, window=self.window_size,
                              shift=shift, bias=local_bias)
            tokens = self.run_block(partial(block_with_mixer, blk, mix=mix), tokens)
        return tokens

    def _stage_maps(self, x: torch.Tensor, last_stage: int) -> Tuple[List[torch.Tensor], Tuple[int, ...]]:
        """Channels-last outputs (N, *grid_k, C_k) of stages 1..``last_stage`` + 1 (0-based)."""
        grid = self.stage3_grid(x)
        maps = [self.patch_embed1(self.to_channels_last(x))]
        for blk in self.blocks1:
            maps[0] = blk(maps[0])
        if last_stage >= 1:
            x2 = self.patch_embed2(maps[0])
            for blk in self.blocks2:
                x2 = blk(x2)
            maps.append(x2)
        if last_stage >= 2:
            tokens = self.patch_embed4(self.patch_embed3(maps[1]).flatten(1, -2))
            tokens = self.forward_stage3_grid(tokens + self.pos_embed_for(grid), grid)
            maps.append(tokens.reshape(tokens.shape[0], *grid, tokens.shape[-1]))
        return maps, grid

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.use_fc_norm else self.norm(x)

    # -- timm interface ----------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *input_size) -> the stage-3 map (N, C3, *grid), normalised by ``norm`` when
        ``global_pool=False``."""
        maps, _ = self._stage_maps(x, 2)
        return self._final_norm(maps[2]).movedim(-1, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, C3, *grid) -> logits (N, num_classes): average pool, ``fc_norm``, ``head``.
        With ``global_pool=''`` the map passes through unpooled (no post-pooling ``fc_norm``)."""
        if self.global_pool == "avg":
            x = x.flatten(2).mean(dim=-1)
            if self.use_fc_norm:
                x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New ``head`` for ``num_classes`` (0: none); ``global_pool`` "avg" or "" (no pooling,
        with ``num_classes=0`` only); None keeps the current pooling."""
        if global_pool is None:
            global_pool = self.global_pool
        check_pooling(num_classes, global_pool)
        self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, Sequence[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The feature levels of ``feature_info`` (all, the last n for an int, or those listed).

        ``output_fmt``: "NCHW" channels-first maps ((N, C, T', H', W') for videos) or "NHWC"
        channels-last. ``norm`` applies the final ``norm`` (``global_pool=False`` models) to
        the stage-3 levels. Returns the maps, or (``forward_features(x)``, maps).
        ``stop_early`` is accepted for timm compatibility: stages after the last requested
        level are skipped whenever only the intermediates are returned.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        # Only intermediates: stop after the last requested stage (also what a pruned model has).
        last_stage = min(max_index, 2) if intermediates_only else 2
        maps, _ = self._stage_maps(x, last_stage)
        levels = list(maps)
        if len(levels) == 3:
            if norm:
                levels[2] = self._final_norm(levels[2])
            if self.ndim == 2:
                levels.append(self.pool4(levels[2].movedim(-1, 1)).movedim(1, -1))
        channels_first = output_fmt == "NCHW"
        out = [levels[i].movedim(-1, 1) if channels_first else levels[i] for i in take]
        if intermediates_only:
            return out
        return self._final_norm(maps[2]).movedim(-1, 1), out

    def prune_intermediate_layers(
        self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> List[int]:
        """Drop what the feature levels ``indices`` do not need; returns their absolute indices."""
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        if max_index < 2:
            self.blocks3 = nn.ModuleList()
            self.patch_embed3 = self.patch_embed4 = nn.Identity()
            self.pos_embed = None
        if max_index < 1:
            self.blocks2 = nn.ModuleList()
            self.patch_embed2 = nn.Identity()
        if prune_norm and not self.use_fc_norm:
            self.norm = nn.Identity()
        if prune_head:
            if self.use_fc_norm:
                self.fc_norm = nn.Identity()
            self.reset_classifier(0, "")
        return take


def _init_finetune_weights(module: nn.Module) -> None:
    """Official finetuning init: trunc-normal(0.02) Linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
