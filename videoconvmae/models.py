"""VideoConvMAE models (table 7 widths/depths, DESIGN §3 video decisions).

Defaults: 16x224x224 clips, cube embedding 2x4x4 then 1x2x2 twice (8x14x14 = 1568 tokens),
3x5x5 depthwise convs, 90% tube masking, multi-scale decoder, decoder 4 blocks x 384 x 6
heads, per-tube norm-pix targets. Overrides as for the image models (``img_size``,
``patch_size`` = spatial stage strides, ...), plus ``num_frames``, ``tubelet_size`` and
``dw_kernel_size`` (an int k means 3 x k x k).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

from common.models import ConvViT, MaskedAutoencoderConvViT, register_model
from common.models.factory import build_from_preset
from common.models.timm_compat import build_timm_classifier, pretrained_cfgs, register_with_timm

MODALITY = "video"  # the tag of these models in the registry (common.modality)
PRETRAIN_DEFAULTS = dict(
    decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6, mask_ratio=0.9,
    norm_pix_loss=True, multi_scale_decoder=True,
)
CLASSIFIER_DEFAULTS = dict(num_classes=400)
# Stage-1/2/3 maps (N, C, T', H', W') for spatio-temporal heads.
NUM_FEATURE_LEVELS = 3

# timm reads the pretrained configs of the entrypoints registered below from this name. timm's
# configs describe images (it asserts a 3-tuple input_size), so input_size and pool_size are
# per frame: the clips are 16 such frames. The size is fixed unless dynamic_img_size=True.
default_cfgs = pretrained_cfgs(
    [f"video_convvit_{size}_patch16" for size in ("small", "base", "large")],
    input_size=(3, 224, 224), pool_size=(14, 14), crop_pct=1.0, num_classes=400, fixed_input_size=True,
)


def video_geometry(
    img_size: Union[int, Sequence[int]] = 224,
    num_frames: int = 16,
    tubelet_size: int = 2,
    patch_size: Sequence[int] = (4, 2, 2),
    dw_kernel_size: Union[int, Sequence[int]] = (3, 5, 5),
) -> dict:
    """Official-style video arguments -> the backbone's geometry arguments."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if num_frames % tubelet_size:
        raise ValueError(f"num_frames={num_frames} must be divisible by tubelet_size={tubelet_size}")
    strides: Tuple[Tuple[int, int, int], ...] = tuple(
        (tubelet_size if stage == 0 else 1, p, p) for stage, p in enumerate(patch_size)
    )
    kernel = (3, dw_kernel_size, dw_kernel_size) if isinstance(dw_kernel_size, int) else tuple(dw_kernel_size)
    return {"input_size": (num_frames, h, w), "stage_strides": strides, "dw_kernel_size": kernel}


def _pretrain(size: str, **overrides) -> MaskedAutoencoderConvViT:
    return build_from_preset(MaskedAutoencoderConvViT, size, PRETRAIN_DEFAULTS, overrides, video_geometry)


def _classifier(variant: str, size: str, pretrained: bool, **overrides) -> ConvViT:
    def build(**kwargs) -> ConvViT:
        return build_from_preset(ConvViT, size, CLASSIFIER_DEFAULTS, kwargs, video_geometry)

    return build_timm_classifier(variant, pretrained, build, NUM_FEATURE_LEVELS, **overrides)


@register_model(modality=MODALITY)
def videoconvmae_small_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """VideoConvMAE-S pretraining model."""
    return _pretrain("small", **kwargs)


@register_model(modality=MODALITY)
def videoconvmae_base_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """VideoConvMAE-B pretraining model (multi-scale decoder on by default)."""
    return _pretrain("base", **kwargs)


@register_model(modality=MODALITY)
def videoconvmae_large_patch16(**kwargs) -> MaskedAutoencoderConvViT:
    """VideoConvMAE-L pretraining model."""
    return _pretrain("large", **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def video_convvit_small_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """VideoConvMAE-S classifier."""
    return _classifier("video_convvit_small_patch16", "small", pretrained, **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def video_convvit_base_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """VideoConvMAE-B classifier."""
    return _classifier("video_convvit_base_patch16", "base", pretrained, **kwargs)


@register_with_timm
@register_model(modality=MODALITY)
def video_convvit_large_patch16(pretrained: bool = False, **kwargs) -> ConvViT:
    """VideoConvMAE-L classifier."""
    return _classifier("video_convvit_large_patch16", "large", pretrained, **kwargs)
