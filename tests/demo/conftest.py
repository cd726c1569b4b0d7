"""Fixtures of the demo tests: the tools' ``main`` functions and an isolated logging set-up."""
from __future__ import annotations

import logging
import runpy
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def tool_main(name: str) -> Callable:
    """``main`` of ``tools/<name>.py``, loaded without running it."""
    return runpy.run_path(str(REPO / "tools" / f"{name}.py"), run_name=f"tools_{name}")["main"]


@pytest.fixture(autouse=True)
def _restore_logging():
    """Jobs attach handlers to the root logger; drop them after each test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_convmae", False):
            root.removeHandler(handler)
            handler.close()
