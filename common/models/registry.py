"""One explicit model registry: ``register_model`` refuses duplicates, ``create_model`` builds.

Each factory is registered with the modality it belongs to (``register_model(modality="video")``);
``common.modality`` asks the registry, never the model's name.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Dict, List, Optional

from torch import nn

from common.modality import discover_modalities

Factory = Callable[..., nn.Module]

_MODELS: Dict[str, Factory] = {}
_MODALITY_OF_MODEL: Dict[str, str] = {}


def register_model(fn: Optional[Factory] = None, *, modality: Optional[str] = None):
    """Decorator: register a factory under its function name, for ``modality``.

    ``@register_model(modality="video")``, or bare ``@register_model`` for a model that belongs
    to no modality (it can be created, but not trained by the engine).
    """

    def register(factory: Factory) -> Factory:
        name = factory.__name__
        if name in _MODELS and _MODELS[name] is not factory:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = factory
        if modality is not None:
            _MODALITY_OF_MODEL[name] = modality
        return factory

    return register(fn) if fn is not None else register


def list_models(pattern: Optional[str] = None, *, modality: Optional[str] = None) -> List[str]:
    """Sorted registered names, optionally filtered by a shell-style pattern and a modality."""
    discover_modalities()
    names = sorted(_MODELS)
    if modality is not None:
        names = [n for n in names if _MODALITY_OF_MODEL.get(n) == modality]
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_modality(name: str) -> str:
    """The modality name ``name`` was registered with; KeyError for unknown or untagged models."""
    _check_known(name)
    if name not in _MODALITY_OF_MODEL:
        raise KeyError(f"model {name!r} was registered without a modality (register_model(modality=...))")
    return _MODALITY_OF_MODEL[name]


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model, e.g. ``create_model("videoconvmae_base_patch16", num_frames=8)``."""
    _check_known(name)
    return _MODELS[name](**overrides)


def _check_known(name: str) -> None:
    if name not in _MODELS:
        discover_modalities()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (see list_models())")
