"""Fixtures of the engine tests: the toy dataset, tiny configs, and an isolated logging set-up."""
from __future__ import annotations

import logging

import pytest

from tests.engine.toy_data import register_toy_dataset


@pytest.fixture(autouse=True)
def _toy_dataset():
    register_toy_dataset()


@pytest.fixture(autouse=True)
def _restore_logging():
    """Jobs attach handlers to the root logger; drop them after each test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_convmae", False):
            root.removeHandler(handler)
            handler.close()
