"""ConvMAE for images: model presets and factories, ImageNet data."""
