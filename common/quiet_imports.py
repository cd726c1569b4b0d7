"""Imports of third-party modules that warn about their own internals on every run.

pytorchvideo (``torch.jit.script_method``) and fvcore (``torch.jit.script``) decorate functions with
TorchScript at import time, which PyTorch now reports as deprecated. The warning is about their
code, not ours or the user's: it is silenced for those imports only, nowhere else.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.script(_method)?` is deprecated"


@contextlib.contextmanager
def torchscript_deprecation_silenced() -> Iterator[None]:
    """Within the block, PyTorch's TorchScript deprecation ``FutureWarning`` is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=FutureWarning)
        yield
