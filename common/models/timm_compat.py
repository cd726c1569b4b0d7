"""Make the classifiers timm models: pretrained configs, ``build_model_with_cfg``, registration.

A modality module defines ``default_cfgs = pretrained_cfgs(...)`` (timm looks it up in the
entrypoint's module) and decorates its factories with ``register_with_timm``; the factories
build through ``build_timm_classifier``, so ``features_only=True, out_indices=...`` wraps the
model in timm's ``FeatureGetterNet`` (which calls ``forward_intermediates``), and
``pretrained=True`` gets timm's "No pretrained weights exist" error: no weights are
downloaded, checkpoints are files (``common.checkpoint``).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs
from torch import nn

PAPER_ID = "arXiv:2205.03892"  # ConvMAE: Masked Convolution Meets Masked Autoencoders


def pretrained_cfgs(names: Iterable[str], **cfg) -> Dict[str, object]:
    """timm ``default_cfgs`` for ``names``: no URL, ImageNet mean/std, first conv, classifier."""
    base = dict(
        url="", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, interpolation="bicubic",
        first_conv="patch_embed1.proj", classifier="head", paper_ids=PAPER_ID,
    )
    return generate_default_cfgs({name: {**base, **cfg} for name in names})


def build_timm_classifier(
    variant: str, pretrained: bool, build: Callable[..., nn.Module], num_levels: int, **kwargs
) -> nn.Module:
    """``build(**kwargs)`` through timm's ``build_model_with_cfg``.

    With ``features_only=True`` the model accepts any input size that is a multiple of its
    total stride (``dynamic_img_size``) and returns its ``num_levels`` feature levels by default.
    """
    if kwargs.get("features_only"):
        kwargs.setdefault("dynamic_img_size", True)
    feature_cfg = {"feature_cls": "getter", "out_indices": tuple(range(num_levels))}
    return build_model_with_cfg(build, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def register_with_timm(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``factory`` (``factory(pretrained=False, **kwargs)``) with timm."""
    return timm.models.register_model(factory)
