"""Fixtures of the demo tests: the tools' ``main`` functions and an isolated logging set-up."""
from __future__ import annotations

import runpy
from pathlib import Path
from typing import Callable


REPO = Path(__file__).resolve().parents[2]


def tool_main(name: str) -> Callable:
    """``main`` of ``tools/<name>.py``, loaded without running it."""
    return runpy.run_path(str(REPO / "tools" / f"{name}.py"), run_name=f"tools_{name}")["main"]
