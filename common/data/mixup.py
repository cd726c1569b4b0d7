"""Mixup / CutMix with label smoothing for image (N, C, H, W) and video (N, C, T, H, W) batches."""
from typing import Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from timm.data.mixup import Mixup


class SpatialMixup:
    """timm's batch Mixup/CutMix, with CutMix boxes in (H, W), the same box for all frames.

    timm cuts its box in dims 2 and 3, which for a video batch would be (T, H); folding time
    into the channels, (N, C, T, H, W) -> (N, C*T, H, W), makes dims 2, 3 the spatial ones.
    The batch size must be even (timm mixes each sample with the flipped batch).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        mixup_alpha: float,
        cutmix_alpha: float,
        prob: float,
        switch_prob: float,
        label_smoothing: float,
    ) -> None:
        self.mixer = Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            mode="batch",
            label_smoothing=label_smoothing,
            num_classes=num_classes,
        )

    def __call__(
        self, inputs: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mixes ``inputs`` (N, C, [T,] H, W) in place (as timm does) and turns int ``labels``
        (N,) into soft targets (N, num_classes)."""
        if inputs.dim() not in (4, 5):
            raise ValueError(f"expected (N, C, H, W) or (N, C, T, H, W), got {tuple(inputs.shape)}")
        shape = inputs.shape
        folded = inputs.reshape(shape[0], -1, shape[-2], shape[-1])
        mixed, targets = self.mixer(folded, labels)
        return mixed.reshape(shape), targets


def build_mixup(cfg: CfgNode) -> Optional[SpatialMixup]:
    """The batch mixer of ``cfg.MIXUP`` (None when ``MIXUP.ENABLE`` is False)."""
    if not cfg.MIXUP.ENABLE:
        return None
    return SpatialMixup(
        num_classes=cfg.MODEL.NUM_CLASSES,
        mixup_alpha=cfg.MIXUP.ALPHA,
        cutmix_alpha=cfg.MIXUP.CUTMIX_ALPHA,
        prob=cfg.MIXUP.PROB,
        switch_prob=cfg.MIXUP.SWITCH_PROB,
        label_smoothing=cfg.MIXUP.LABEL_SMOOTH_VALUE,
    )
