"""Load a script of the repository (a benchmark or a tool, not a package module) as a module."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str, module_name: str, *, register: bool = False) -> ModuleType:
    """The script at ``REPO/relative_path``, executed as module ``module_name``; ``register``: put in
    ``sys.modules`` first (dataclasses and pickling look a class's module up there)."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / relative_path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def registered_script(relative_path: str, module_name: str) -> Iterator[ModuleType]:
    """``load_script(register=True)``, taken out of ``sys.modules`` after use: for a pytest fixture."""
    try:
        yield load_script(relative_path, module_name, register=True)
    finally:
        sys.modules.pop(module_name, None)
