"""Fixtures of the robustness tests: those of the engine tests (toy dataset, logging clean-up, media)."""
from tests.engine.conftest import _toy_dataset, video_data  # noqa: F401  (fixtures)
