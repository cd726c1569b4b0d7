"""Tiny image and video models for fast CPU tests, and helpers to compare their results."""
import torch

from common.models import create_model

TINY = dict(embed_dim=(16, 24, 32), depth=(1, 1, 2), num_heads=2, mlp_ratio=(2, 2, 2))
TINY_DECODER = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
IMAGE_SIZE = (64, 96)
VIDEO = dict(num_frames=4, img_size=32)


def tiny_image_mae(**kw):
    kw = {"img_size": IMAGE_SIZE, **TINY, **TINY_DECODER, **kw}
    return create_model("convmae_convvit_small_patch16", **kw)


def tiny_video_mae(**kw):
    kw = {**VIDEO, **TINY, **TINY_DECODER, **kw}
    return create_model("videoconvmae_small_patch16", **kw)


def tiny_image_classifier(**kw):
    kw = {"img_size": IMAGE_SIZE, "num_classes": 5, **TINY, **kw}
    return create_model("convvit_small_patch16", **kw)


def tiny_video_classifier(**kw):
    kw = {**VIDEO, "num_classes": 5, **TINY, **kw}
    return create_model("video_convvit_small_patch16", **kw)


# Smaller still (one block per stage): the sparse-path and compile tests run many of these.
SMALL = dict(embed_dim=(16, 24, 32), depth=(1, 1, 1), num_heads=2, mlp_ratio=(2, 2, 2), **TINY_DECODER)
SMALL_BUILDERS = {
    "image": lambda **kw: tiny_image_mae(**{**SMALL, "img_size": 64, **kw}),
    "video": lambda **kw: tiny_video_mae(**{**SMALL, **kw}),
}


def randomize_vectors(model):
    """Non-trivial biases and norms, so that every parameter shapes the result."""
    for p in model.parameters():
        if p.requires_grad and p.dim() == 1:
            torch.nn.init.normal_(p, std=0.2)
    return model


def assert_relative_close(actual, expected, tol: float = 1e-4) -> None:
    """Elementwise, relative to the largest magnitude of the reference."""
    scale = expected.abs().max().clamp_min(1e-12)
    torch.testing.assert_close(actual / scale, expected / scale, rtol=tol, atol=tol)
