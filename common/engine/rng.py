"""Random number generators: seeding, and capturing/restoring their states for exact resume."""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch CPU and all CUDA generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_deterministic() -> None:
    """``DETERMINISTIC True``: deterministic kernels (a warning where an op has none), no cuDNN
    autotuning, a fixed cuBLAS workspace, so that a resumed run repeats the uninterrupted one."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


CpuRngStates = Tuple[Any, Any, torch.Tensor]


def cpu_rng_states() -> CpuRngStates:
    """The python, numpy and torch CPU RNG states (CUDA generators are not touched: sample
    loading runs on the CPU)."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_cpu_rng_states(states: CpuRngStates) -> None:
    """Inverse of ``cpu_rng_states``."""
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


@contextmanager
def cpu_rngs_from(states: CpuRngStates) -> Iterator[None]:
    """Inside the block the CPU RNGs continue from ``states``; their outer states are restored after."""
    outer = cpu_rng_states()
    set_cpu_rng_states(states)
    try:
        yield
    finally:
        set_cpu_rng_states(outer)


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch CPU RNGs inside the block and restore their states after."""
    outer = cpu_rng_states()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        set_cpu_rng_states(outer)


def capture_rng_state() -> Dict[str, Any]:
    """All global RNG states as tensors / plain python (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state`` (CUDA states only when as many devices are visible)."""
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs tuples; serialisation may give lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
