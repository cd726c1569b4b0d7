"""Model sizes of ConvMAE's table 7, shared by the image and the video models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class ConvViTSize:
    """Widths C1-C3, depths L1-L3, MLP ratios P1-P3 and stage-3 heads of one model size."""

    embed_dim: Tuple[int, int, int]
    depth: Tuple[int, int, int]
    mlp_ratio: Tuple[float, float, float]
    num_heads: int
    paper_params_m: float  # the encoder's parameter count reported in table 7, millions

    def as_kwargs(self) -> Dict[str, object]:
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "mlp_ratio": self.mlp_ratio,
            "num_heads": self.num_heads,
        }


CONVVIT_SIZES: Dict[str, ConvViTSize] = {
    "small": ConvViTSize((128, 256, 384), (2, 2, 11), (4, 4, 4), 6, 22),
    "base": ConvViTSize((256, 384, 768), (2, 2, 11), (4, 4, 4), 12, 84),
    "base_star": ConvViTSize((256, 384, 768), (2, 2, 11), (8, 8, 4), 12, 88),
    "large": ConvViTSize((384, 768, 1024), (2, 2, 23), (8, 8, 4), 16, 322),
    "huge": ConvViTSize((768, 1024, 1280), (2, 2, 31), (8, 8, 4), 16, 666),
}
