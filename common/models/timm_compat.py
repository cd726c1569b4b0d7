"""Expose registered classifiers through ``timm.create_model`` as well."""
from __future__ import annotations

from typing import Callable

import timm
from torch import nn

# Keys timm's create_model passes to every entrypoint; our models load no hub weights.
_TIMM_ONLY_KEYS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def register_with_timm(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: make ``timm.create_model(factory.__name__, ...)`` build ``factory``."""

    def entrypoint(pretrained: bool = False, **kwargs) -> nn.Module:
        if pretrained:
            raise ValueError(
                f"{factory.__name__}: no weights are downloaded; build the model and load a "
                "checkpoint file (common.checkpoint.load_pretrained_into_classifier)"
            )
        for key in _TIMM_ONLY_KEYS:
            kwargs.pop(key, None)
        return factory(**kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = factory.__name__
    entrypoint.__module__ = factory.__module__
    entrypoint.__doc__ = factory.__doc__
    timm.models.register_model(entrypoint)
    return factory
