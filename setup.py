"""Installs the three top-level packages of VideoConvMAE: common, imageconvmae, videoconvmae."""
from setuptools import find_packages, setup

EXPORT_REQUIRES = ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"]

setup(
    name="videoconvmae",
    version="0.1.0",
    description="ConvMAE and VideoConvMAE: masked convolution meets masked autoencoders, "
    "for images and videos, on PyTorch and PyTorchVideo.",
    python_requires=">=3.9",
    packages=find_packages(include=["common*", "imageconvmae*", "videoconvmae*"]),
    install_requires=[
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16",
        "pytorchvideo>=0.1.5",
        "decord>=0.6.0",
        "av>=10.0",
        "timm>=0.9.12",
        "fvcore>=0.1.5",
        "einops>=0.6",
        "submitit>=1.4",
        "numpy",
        "tqdm",
        "matplotlib",
        "pillow",
    ],
    extras_require={
        # tools/export.py to ONNX (torch.onnx.export(..., dynamo=True)) and onnxruntime checks.
        "export": EXPORT_REQUIRES,
        # The export tests run in CI, which installs .[test].
        "test": ["pytest>=7", "tensorboard", *EXPORT_REQUIRES],
    },
    # common.modality finds the modalities here: a third one registers the same way (or calls
    # common.modality.register_modality itself).
    entry_points={
        "convmae.modalities": [
            "image = imageconvmae.modality:IMAGE",
            "video = videoconvmae.modality:VIDEO",
        ],
    },
)
