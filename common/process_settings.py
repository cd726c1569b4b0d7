"""Process-wide settings that the entry points (tools/, benchmarks/) apply before any work.

The library never applies them on import: a program that embeds it keeps its own settings.
"""
from __future__ import annotations

import os

THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def configure_process() -> None:
    """Apply the entry points' settings; a value the user already set wins.

    ``THP_MEM_ALLOC_ENABLE=1``: PyTorch backs CPU tensors of 2 MB and more with transparent huge
    pages (read at its first such allocation). A fresh batch of video clips then costs ~500x fewer
    page faults: the uint8 -> float normalisation of 8 clips of 16x224x224 takes 18 ms instead of
    61 ms on the 2-core CPU of docs/performance.md.
    """
    os.environ.setdefault(THP_VARIABLE, "1")
