"""The masked autoencoder and classifier for any dimensionality, and the model registry."""
from common.models.convvit import ConvViT, ConvViTBackbone
from common.models.mae import MaskedAutoencoderConvViT
from common.models.presets import CONVVIT_SIZES, ConvViTSize
from common.models.reconstruction import patchify, unpatchify
from common.models.registry import create_model, list_models, register_model

__all__ = [
    "CONVVIT_SIZES",
    "ConvViT",
    "ConvViTBackbone",
    "ConvViTSize",
    "MaskedAutoencoderConvViT",
    "create_model",
    "list_models",
    "patchify",
    "register_model",
    "unpatchify",
]
