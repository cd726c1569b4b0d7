"""ConvMAE pretraining model for any dimensionality: block-wise masking, masked
convolutions in stages 1-2, visible-only stage 3, multi-scale fusion, MAE decoder."""
from __future__ import annotations

import math
from typing import Callable, Optional, Set, Tuple

import torch
from torch import nn

from common.layers import conv_nd, strided_conv, transformer_block
from common.layers.blocks import TRANSFORMER_NORM
from common.masking import (
    RandomMasking,
    TubeMasking,
    block_wise_masks,
    check_mask,
    upsample_mask,
    visible_indices,
)
from common.models.convvit import ConvViTBackbone
from common.models.reconstruction import masked_mse, patchify, reconstruction_targets
from common.models.sparse import visible_conv_stages, visible_multi_scale

MASKING_MODES = ("block", "input_token")


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(N, L, C) gathered at (N, L') indices -> (N, L', C)."""
    return torch.gather(x, 1, ids[..., None].expand(-1, -1, x.shape[-1]))


class MaskedAutoencoderConvViT(ConvViTBackbone):
    """ConvMAE / VideoConvMAE pretraining: ``loss, pred, mask = model(x, mask_ratio, mask)``.

    Args (besides the backbone's):
        decoder_embed_dim, decoder_depth, decoder_num_heads: the MAE decoder.
        norm_pix_loss: normalise each target patch (per tube and channel for videos).
        mask_ratio: default ratio of the mask generator.
        mask_generator: callable ``(batch, grid, ratio=, device=) -> (N, L)``; default random
            masking for images, tube masking for videos. A generator with a method
            ``num_visible(grid, ratio) -> int`` (the defaults) spares the forward a
            data-dependent count of the visible tokens, so a compiled forward is one graph.
        masked_conv: zero masked positions before the depthwise convs (the paper's masked
            convolution); off only for the ablation.
        multi_scale_decoder: add the stride-convolved stage-1/2 features to the encoder
            output (eq. 1); without it the decoder sees stage 3 alone.
        masking: "block" (the mask is drawn on the stage-3 grid and upsampled) or
            "input_token" (ablation: MAE random masking on the stage-1 grid, so stage 3 must
            process every token).
        sparse_conv: run stages 1-2 on the visible blocks only (``common.models.sparse``;
            same results as the dense masked path, a fraction of its cost). The ablations
            ``masking="input_token"`` and ``masked_conv=False`` always take the dense path,
            as does ``sparse_conv=False`` (the reference).
    """

    def __init__(
        self,
        *,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        norm_pix_loss: bool = False,
        mask_ratio: float = 0.75,
        mask_generator: Optional[Callable[..., torch.Tensor]] = None,
        masked_conv: bool = True,
        multi_scale_decoder: bool = True,
        masking: str = "block",
        sparse_conv: bool = True,
        **backbone_kwargs,
    ):
        super().__init__(**backbone_kwargs)
        if masking not in MASKING_MODES:
            raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
        if decoder_embed_dim % decoder_num_heads:
            raise ValueError(
                f"decoder_embed_dim={decoder_embed_dim} is not divisible by "
                f"decoder_num_heads={decoder_num_heads}"
            )
        c1, c2, c3 = self.embed_dim
        default_generator = RandomMasking if self.ndim == 2 else TubeMasking
        self.mask_generator = mask_generator or default_generator(mask_ratio)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.masked_conv = masked_conv
        self.multi_scale_decoder = multi_scale_decoder
        self.masking = masking
        self.sparse_conv = sparse_conv
        # False: the decoder and loss leave an enclosing autocast (set when a run rewinds a divergence).
        self.decoder_autocast = True
        s1, s2, s3 = self.stage_strides
        # Factors from the stage-3 grid up to the stage-1 and stage-2 grids.
        self.mask_upsampling = (tuple(a * b for a, b in zip(s2, s3)), s3)

        self.pos_embed = nn.Parameter(self.fixed_pos_embed(c3), requires_grad=False)
        if multi_scale_decoder:
            conv = conv_nd(self.ndim)
            self.stage1_output_decode = conv(c1, c3, self.mask_upsampling[0], stride=self.mask_upsampling[0])
            self.stage2_output_decode = conv(c2, c3, s3, stride=s3)
        self.norm = TRANSFORMER_NORM(c3)

        self.decoder_embed = nn.Linear(c3, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(self.fixed_pos_embed(decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            transformer_block(decoder_embed_dim, decoder_num_heads, 4.0) for _ in range(decoder_depth)
        )
        self.decoder_norm = TRANSFORMER_NORM(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, math.prod(self.patch_size) * self.in_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official pretraining init: xavier Linear layers and flattened patch_embed3 weight."""
        w = self.patch_embed3.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {"pos_embed", "mask_token", "decoder_pos_embed"}

    # -- masks -------------------------------------------------------------------------------
    @property
    def mask_grid(self) -> Tuple[int, ...]:
        """The grid the mask is drawn on: stage 3 (block-wise) or stage 1 (input-token)."""
        return self.grid if self.masking == "block" else self.grids[0]

    def random_masking(self, batch_size: int, mask_ratio: Optional[float] = None,
                       device: Optional[torch.device] = None) -> torch.Tensor:
        """Draw a mask (N, L) over ``mask_grid``, 1 = masked."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        return self.mask_generator(batch_size, self.mask_grid, ratio=ratio, device=device)

    def generated_visible_count(self, mask_ratio: Optional[float] = None) -> Optional[int]:
        """Visible tokens of every ``random_masking`` mask, if the generator tells (else None)."""
        count = getattr(self.mask_generator, "num_visible", None)
        return None if count is None else count(self.mask_grid, self.mask_ratio if mask_ratio is None else mask_ratio)

    def _visible_maps(self, mask: torch.Tensor, dtype: torch.dtype):
        """Stage-1/2 visibility (N, *grid_k, 1) of a stage-3 mask, or None without masked conv."""
        if not self.masked_conv:
            return None, None
        m1, m2 = block_wise_masks(mask, self.grid, self.mask_upsampling)
        return (1.0 - m1)[..., None].to(dtype), (1.0 - m2)[..., None].to(dtype)

    # -- encoder / decoder / loss --------------------------------------------------------------
    def forward_encoder(self, x: torch.Tensor, mask: torch.Tensor,
                        num_visible: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Block-wise masked encoding. ``mask`` (N, L) -> latent (N, L_visible, C3), ids_restore.
        ``num_visible``: L_visible if known (else counted from the mask, see ``visible_indices``)."""
        ids_keep, ids_restore = visible_indices(mask, num_visible)
        if self.sparse_conv and self.masked_conv:
            tokens, fusion = self._visible_features_sparse(x, ids_keep)
        else:
            tokens, fusion = self._visible_features_dense(x, mask, ids_keep)
        tokens = self.forward_stage3(tokens)
        if fusion is not None:
            tokens = tokens + fusion
        return self.norm(tokens), ids_restore

    def _visible_features_sparse(
        self, x: torch.Tensor, ids_keep: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Stage-3 input tokens (with position embedding) and the multi-scale features (or
        None) at the visible tokens, both (N, L_visible, C3), from the visible blocks only."""
        x1, x2, tokens = visible_conv_stages(self, x, ids_keep)
        tokens = tokens + self.pos_embed[0][ids_keep]
        if not self.multi_scale_decoder:
            return tokens, None
        return tokens, visible_multi_scale(self.stage1_output_decode, self.stage2_output_decode, x1, x2)

    def _visible_features_dense(
        self, x: torch.Tensor, mask: torch.Tensor, ids_keep: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """As ``_visible_features_sparse``, from the full grids with masked convolution."""
        x1, x2, tokens = self.forward_conv_stages(x, *self._visible_maps(mask, x.dtype))
        tokens = _gather_tokens(tokens + self.pos_embed, ids_keep)
        if not self.multi_scale_decoder:
            return tokens, None
        return tokens, _gather_tokens(self._multi_scale(x1, x2), ids_keep)

    def _multi_scale(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """SC(E1) + SC(E2) on the stage-3 grid, as tokens (N, L, C3)."""
        e1 = strided_conv(self.stage1_output_decode, x1).flatten(1, -2)
        e2 = strided_conv(self.stage2_output_decode, x2).flatten(1, -2)
        return e1 + e2

    def forward_decoder(self, latent: torch.Tensor, ids_restore: Optional[torch.Tensor]) -> torch.Tensor:
        """latent (N, L_visible, C3) -> pred (N, L, prod(patch) * C); mask tokens fill the rest."""
        x = self.decoder_embed(latent)
        if ids_restore is not None:
            n, num_visible, dim = x.shape
            fill = self.mask_token.to(x.dtype).expand(n, ids_restore.shape[1] - num_visible, dim)
            x = _gather_tokens(torch.cat([x, fill], dim=1), ids_restore)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """MSE on masked content: ``weight`` (N, L) per patch or (N, L, P) per value."""
        target = reconstruction_targets(x, self.patch_size, self.norm_pix_loss)
        return masked_mse(pred, target, weight)

    def _pixel_weights(self, mask1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-value loss weights (N, L, P) of a stage-1 mask (input-token masking)."""
        pixels = upsample_mask(mask1, self.grids[0], self.stage_strides[0])[:, None]
        pixels = pixels.expand(-1, x.shape[1], *pixels.shape[2:]).to(x.dtype)
        return patchify(pixels, self.patch_size)

    def _forward_input_token(self, x: torch.Tensor, mask1: torch.Tensor):
        visible1 = (1.0 - mask1).reshape(mask1.shape[0], *self.grids[0], 1).to(x.dtype)
        x1, x2, tokens = self.forward_conv_stages(x, visible1 if self.masked_conv else None)
        tokens = self.forward_stage3(tokens + self.pos_embed)
        if self.multi_scale_decoder:
            tokens = tokens + self._multi_scale(x1, x2)
        return self._decode(x, self.norm(tokens), None, self._pixel_weights(mask1, x))

    def forward(
        self, x: torch.Tensor, mask_ratio: Optional[float] = None, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (N, C, *input_size) -> ``loss``, ``pred`` (N, L, prod(patch) * C), ``mask``.

        ``mask`` (N, L over ``mask_grid``, 1 = masked) replaces the random one when given.
        """
        n = x.shape[0]
        num_visible = None
        if mask is None:
            mask = self.random_masking(n, mask_ratio, device=x.device)
            num_visible = self.generated_visible_count(mask_ratio)
        else:
            mask = check_mask(mask.to(x.device), n, math.prod(self.mask_grid))
        if self.masking == "input_token":
            loss, pred = self._forward_input_token(x, mask)
            return loss, pred, mask
        latent, ids_restore = self.forward_encoder(x, mask, num_visible)
        loss, pred = self._decode(x, latent, ids_restore, mask)
        return loss, pred, mask

    def _decode(self, x: torch.Tensor, latent: torch.Tensor, ids_restore: Optional[torch.Tensor],
                weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``loss, pred`` of the decoder; with ``decoder_autocast`` False, outside any autocast, in the
        weights' precision (ConvMAE's remedy for a long run that diverges under reduced precision)."""
        if self.decoder_autocast:
            pred = self.forward_decoder(latent, ids_restore)
            return self.forward_loss(x, pred, weight), pred
        with torch.autocast(device_type=latent.device.type, enabled=False):
            dtype = self.decoder_pred.weight.dtype
            pred = self.forward_decoder(latent.to(dtype), ids_restore)
            return self.forward_loss(x.to(dtype), pred, weight), pred
