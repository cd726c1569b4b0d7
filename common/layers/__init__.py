"""Building blocks shared by the image and video models (dimensionality is a parameter)."""
from common.layers.blocks import (
    ConvBlock,
    ConvMlp,
    PatchEmbed,
    blockwise_conv,
    conv_nd,
    grid_after,
    strided_conv,
    to_blocks,
    transformer_block,
)
from common.layers.sparse_conv import gather_windows, visible_depthwise, window_rows

__all__ = [
    "ConvBlock",
    "ConvMlp",
    "PatchEmbed",
    "blockwise_conv",
    "conv_nd",
    "gather_windows",
    "grid_after",
    "strided_conv",
    "to_blocks",
    "transformer_block",
    "visible_depthwise",
    "window_rows",
]
