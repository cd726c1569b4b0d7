"""ConvMAE image models (table 7 sizes) under the official factory names.

Keyword overrides use the official argument names: ``img_size`` (int or (H, W), any multiple
of 16), ``patch_size`` (the three stage strides, default (4, 2, 2)), ``in_chans``,
``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``decoder_embed_dim``,
``decoder_depth``, ``decoder_num_heads``, ``norm_pix_loss``, ``num_classes``,
``global_pool``, ``drop_path_rate``; plus the ablation switches ``dw_kernel_size``,
``masked_conv``, ``multi_scale_decoder`` and ``masking`` ("block" | "input_token").
The classifiers are timm models (also ``timm.create_model(name, features_only=True)`` for the
E1-E4 maps) and take the detection switches ``window_size``, ``global_blocks``,
``window_shift`` and ``dynamic_img_size`` (see ``common.models.ConvViT``).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

from common.models import ConvViT, MaskedAutoencoderConvViT, register_model
from common.models.factory import build_from_preset
from common.models.timm_compat import build_timm_classifier, pretrained_cfgs, register_with_timm

MODALITY = "image"  # the tag of these models in the registry (common.modality)
PRETRAIN_DEFAULTS = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mask_ratio=0.75)
CLASSIFIER_DEFAULTS = dict(num_classes=1000)
# E1-E4 (strides 4, 8, 16, 32) of the dense-prediction backbone, paper §2.3.
NUM_FEATURE_LEVELS = 4

# timm reads the pretrained configs of the entrypoints registered below from this name.
default_cfgs = pretrained_cfgs(
    [f"convvit_{size}_patch16" for size in ("small", "base", "base_star", "large", "huge")],
    input_size=(3, 224, 224), pool_size=(14, 14), crop_pct=0.875, num_classes=1000, fixed_input_size=True,
)


def image_geometry(
    img_size: Union[int, Sequence[int]] = 224, patch_size: Sequence[int] = (4, 2, 2)
) -> dict:
    """Official (img_size, patch_size) -> the backbone's (input_size, stage_strides)."""
    size: Tuple[int, int] = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return {"input_size": size, "stage_strides": tuple((p, p) for p in patch_size)}


def _pretrain(size: str, **overrides) -> MaskedAutoencoderConvViT:
    return build_from_preset(MaskedAutoencoderConvViT, size, PRETRAIN_DEFAULTS, overrides, image_geometry)


def _classifier(variant: str, size: str, pretrained: bool, **overrides) -> ConvViT:
    def build(**kwargs) -> ConvViT:
        return build_from_preset(ConvViT, size, CLASSIFIER_DEFAULTS, kwargs, image_geometry)

    return build_timm_classifier(variant, pretrained, build, NUM_FEATURE_LEVELS, **overrides)


@register_model(modality=MODALITY)
def convmae_convvit_small_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """ConvMAE-S pretraining model."""
    return _pretrain("small", **kwargs)


@register_model(modality=MODALITY)
def convmae_convvit_base_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """ConvMAE-B pretraining model."""
    return _pretrain("base", **kwargs)


@register_model(modality=MODALITY)
def convmae_convvit_base_star_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """ConvMAE-B* pretraining model (MLP ratio 8 in stages 1-2)."""
    return _pretrain("base_star", **kwargs)


@register_model(modality=MODALITY)
def convmae_convvit_large_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """ConvMAE-L pretraining model."""
    return _pretrain("large", **kwargs)


@register_model(modality=MODALITY)
def convmae_convvit_huge_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """ConvMAE-H pretraining model."""
    return _pretrain("huge", **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def convvit_small_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """ConvMAE-S classifier."""
    return _classifier("convvit_small_patch16", "small", pretrained, **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def convvit_base_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """ConvMAE-B classifier."""
    return _classifier("convvit_base_patch16", "base", pretrained, **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def convvit_base_star_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """ConvMAE-B* classifier."""
    return _classifier("convvit_base_star_patch16", "base_star", pretrained, **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def convvit_large_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """ConvMAE-L classifier."""
    return _classifier("convvit_large_patch16", "large", pretrained, **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def convvit_huge_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """ConvMAE-H classifier."""
    return _classifier("convvit_huge_patch16", "huge", pretrained, **kwargs)
