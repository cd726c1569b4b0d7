"""One explicit model registry: ``register_model`` refuses duplicates, ``create_model`` builds."""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from typing import Callable, Dict, List, Optional

from torch import nn

_MODELS: Dict[str, Callable[..., nn.Module]] = {}
# The modality packages register their models on import; common never imports them eagerly.
_MODEL_PACKAGES = ("imageconvmae.models", "videoconvmae.models")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a factory under its function name."""
    name = fn.__name__
    if name in _MODELS and _MODELS[name] is not fn:
        raise ValueError(f"a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def _import_model_packages() -> None:
    for module in _MODEL_PACKAGES:
        importlib.import_module(module)


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Sorted registered names, optionally filtered by a shell-style pattern."""
    _import_model_packages()
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model, e.g. ``create_model("videoconvmae_base_patch16", num_frames=8)``."""
    if name not in _MODELS:
        _import_model_packages()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (see list_models())")
    return _MODELS[name](**overrides)
