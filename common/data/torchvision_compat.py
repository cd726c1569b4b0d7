"""Lets PyTorchVideo 0.1.5 import with current torchvision.

``pytorchvideo.transforms.augmentations`` imports ``torchvision.transforms.functional_tensor``,
a module torchvision renamed to ``torchvision.transforms._functional_tensor``. Installing the
old name as an alias of the new module, before ``pytorchvideo.transforms`` is imported, makes
the import (and PyTorchVideo's RandAugment, which calls ``affine`` from it) work.
"""
import importlib
import sys
from types import ModuleType

OLD_NAME = "torchvision.transforms.functional_tensor"
NEW_NAME = "torchvision.transforms._functional_tensor"


def install_functional_tensor_alias() -> ModuleType:
    """Registers ``OLD_NAME`` in ``sys.modules`` unless torchvision still provides it.

    Returns the module now importable under ``OLD_NAME``.
    """
    if OLD_NAME in sys.modules:
        return sys.modules[OLD_NAME]
    try:
        return importlib.import_module(OLD_NAME)
    except ModuleNotFoundError:
        module = importlib.import_module(NEW_NAME)
        sys.modules[OLD_NAME] = module
        return module
