"""VideoConvMAE for video: model presets and factories, K400/SSV2 data, multi-view testing."""
