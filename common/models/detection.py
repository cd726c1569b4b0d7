"""The dense-prediction backbone (paper §2.3) in the form torchvision's detectors take."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool


class FPNBackbone(nn.Module):
    """A ``features_only`` model (E1-E4) followed by torchvision's FPN (+ max-pooled P6).

    ``features``: e.g. ``timm.create_model("convvit_base_patch16", features_only=True,
    window_size=7)``. Outputs the ``OrderedDict`` of ``out_channels`` maps ("0".."3", "pool")
    that ``torchvision.models.detection.MaskRCNN`` expects, and sets ``out_channels``.
    """

    def __init__(self, features: nn.Module, out_channels: int = 256):
        super().__init__()
        self.body = features
        self.fpn = FeaturePyramidNetwork(features.feature_info.channels(), out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        levels = self.body(x)
        return self.fpn(OrderedDict((str(i), level) for i, level in enumerate(levels)))
