"""Mixed precision: bf16 autocast where available, fp16 autocast with a GradScaler on CUDA, fp32."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager, Optional

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """The autocast dtype (None = fp32) on a device type, and whether a GradScaler is needed."""

    dtype: Optional[torch.dtype]
    device_type: str

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> ContextManager:
        """The autocast context for forward passes (a no-op for fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        """A GradScaler for fp16, None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.needs_scaler else None


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 on CUDA when supported, else fp16 on CUDA, fp32 on CPU."""
    if name not in PRECISIONS:
        raise ValueError(f"TRAIN.PRECISION must be one of {PRECISIONS}, got {name!r}")
    on_cuda = device.type == "cuda"
    if name == "auto":
        name = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "fp32"
    if name == "fp16" and not on_cuda:
        raise ValueError("TRAIN.PRECISION fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(dtype=dtype, device_type=device.type)
