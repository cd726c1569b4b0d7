"""Forward FLOP counts with fvcore (one multiply-add counts as one FLOP, fvcore's convention)."""
from __future__ import annotations

import math
from typing import Any, List, Sequence

import torch
from torch import nn

from common.quiet_imports import torchscript_deprecation_silenced

with torchscript_deprecation_silenced():
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``scaled_dot_product_attention``: q @ k^T and attn @ v, (..., Lq, D) x (..., Lk, D)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def layer_norm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``layer_norm`` of any rank (fvcore's handle refuses more than 5 dims, which the sparse
    stages' (N, blocks, T, H, W, C) tensors have): 5 per element with affine weights, else 4,
    fvcore's estimate."""
    has_affine = get_shape(inputs[2]) is not None
    return math.prod(get_shape(inputs[0])) * (5 if has_affine else 4)


def forward_flops(model: nn.Module, inputs: Sequence[torch.Tensor]) -> float:
    """Forward FLOPs of ``model(*inputs)``, attention included; unsupported-op warnings off."""
    analysis = FlopCountAnalysis(model, tuple(inputs))
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.set_op_handle("aten::layer_norm", layer_norm_flop_jit)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return float(analysis.total())
