"""Build a model from a table-7 size preset, modality defaults and user overrides."""
from __future__ import annotations

import inspect
from typing import Callable, Mapping

from torch import nn

from common.models.presets import CONVVIT_SIZES


def build_from_preset(
    cls: Callable[..., nn.Module],
    size: str,
    defaults: Mapping[str, object],
    overrides: Mapping[str, object],
    geometry: Callable[..., dict],
) -> nn.Module:
    """``cls(**geometry(...), **rest)`` where later sources win: preset < defaults < overrides.

    ``geometry`` turns the modality's official-style arguments (``img_size``, ``num_frames``,
    ...; whichever its signature names) into the backbone's ``input_size``/``stage_strides``.
    """
    kwargs = {**CONVVIT_SIZES[size].as_kwargs(), **defaults, **overrides}
    names = inspect.signature(geometry).parameters
    geometry_args = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    return cls(**geometry(**geometry_args), **kwargs)
