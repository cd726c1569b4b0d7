"""Optimizers: parameter groups (no weight decay, layer-wise lr decay), lr scaling, schedules.

Layer-wise lr decay follows the ConvMAE contract (DESIGN.md §2): the patch embeddings, the
position embedding and all of stages 1-2 are layer 0, ``blocks3.i`` is layer ``i + 1`` and
everything else (``fc_norm``, ``head``, ...) is the last layer ``len(blocks3) + 1``. The layer
of every parameter comes from the model's timm ``group_matcher`` through timm's own
``group_parameters``. A group's lr is ``lr * lr_scale`` with
``lr_scale = layer_decay ** (last_layer - layer_id)``.

AdamW and SGD run torch's fused kernels (``fused=True``: one kernel over all the parameters
of a group, on every device torch has them for, the CPU included) unless ``fused=False``.
Measured on the 2-core CPU of docs/performance.md (2 threads), one AdamW step over ConvMAE-B's
parameters: 220 ms with torch's default (a per-tensor loop on the CPU), 70 ms fused. An optimizer state saved
by the fused or the per-tensor implementation loads into either (``keep_implementation_on_load``).

timm's ``param_groups_layer_decay`` gives every parameter the same ``lr_scale`` and weight
decay (tests/models/test_timm_interface.py), but orders its groups differently and, without
layer decay, splits them per layer; the group layout here is kept so that optimizer states
in existing checkpoints still resume.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import timm.optim
import torch
from timm.models import group_parameters
from torch import nn
from torch.optim.optimizer import _default_to_fused_or_foreach

logger = logging.getLogger(__name__)

NO_WEIGHT_DECAY_NAMES = ("pos_embed", "mask_token", "decoder_pos_embed")
LR_REFERENCE_BATCH = 256


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: ``base_lr * global_batch / 256``."""
    return base_lr * global_batch / LR_REFERENCE_BATCH


def skips_weight_decay(name: str, param: torch.Tensor) -> bool:
    """True for 1-D parameters (norms, biases) and the position embeddings / mask token."""
    return param.ndim <= 1 or name.split(".")[-1] in NO_WEIGHT_DECAY_NAMES


def layer_ids(model: nn.Module) -> Dict[str, int]:
    """Layer index of every parameter name, from the model's ``group_matcher`` (timm's mapping)."""
    return group_parameters(model, model.group_matcher(coarse=False), reverse=True)


def param_groups(
    model: nn.Module, *, weight_decay: float, layer_decay: float = 1.0
) -> List[Dict]:
    """Trainable parameters grouped by (layer, weight decay or not).

    Each group carries ``weight_decay``, ``lr_scale`` and ``layer_id``; frozen parameters are
    left out. With ``layer_decay == 1`` every ``lr_scale`` is 1.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layers = layer_ids(model)
    last_layer = max(layers.values())
    groups: Dict[Tuple[int, bool], Dict] = {}
    for name, param in named:
        layer = layers[name] if layer_decay != 1.0 else last_layer
        no_decay = skips_weight_decay(name, param)
        group = groups.setdefault(
            (layer, no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": layer_decay ** (last_layer - layer),
                "layer_id": layer,
            },
        )
        group["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(
    model: nn.Module,
    *,
    method: str,
    lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
    betas: Sequence[float] = (0.9, 0.999),
    momentum: float = 0.9,
    fused: bool = True,
) -> torch.optim.Optimizer:
    """AdamW, LARS (timm's; trust ratio on matrices only, as in MAE) or SGD over ``param_groups``.

    ``fused``: AdamW and SGD use torch's fused kernel where the parameters' device has one
    (torch has none for LARS); False: torch's default implementation.
    """
    groups = param_groups(model, weight_decay=weight_decay, layer_decay=layer_decay)
    if method == "adamw":
        optimizer = _maybe_fused(torch.optim.AdamW, groups, fused, lr=lr, betas=tuple(betas))
    elif method == "lars":
        for group in groups:
            group["always_adapt"] = _all_matrices(group)
        optimizer = timm.optim.Lars(groups, lr=lr, momentum=momentum)
    elif method == "sgd":
        optimizer = _maybe_fused(torch.optim.SGD, groups, fused, lr=lr, momentum=momentum)
    else:
        raise ValueError(f"SOLVER.OPTIMIZING_METHOD must be adamw, lars or sgd, got {method!r}")
    keep_implementation_on_load(optimizer)
    return optimizer


def _maybe_fused(cls: Callable[..., torch.optim.Optimizer], groups: List[Dict], fused: bool,
                 **kwargs: Any) -> torch.optim.Optimizer:
    """``cls(groups, fused=True, **kwargs)`` if asked and torch has the fused kernel for the
    parameters' device and dtype, else ``cls(groups, **kwargs)`` (torch's default)."""
    params = [p for group in groups for p in group["params"]]
    # torch's own rule for choosing an implementation (torch.optim.optimizer)
    supported, _ = _default_to_fused_or_foreach(params, differentiable=False, use_fused=True)
    if fused and not supported:
        logger.info("%s: torch has no fused kernel for parameters on %s; using its default implementation",
                    cls.__name__, sorted({p.device.type for p in params}))
    return cls(groups, fused=True, **kwargs) if fused and supported else cls(groups, **kwargs)


IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable")


def keep_implementation_on_load(optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer.load_state_dict`` keep this optimizer's implementation.

    torch's ``load_state_dict`` takes every group setting from the saved state, the
    ``fused`` / ``foreach`` / ``capturable`` flags included: a fused optimizer that resumes a
    checkpoint of the per-tensor one (every checkpoint written before fusing was the default)
    would silently run per-tensor from then on, and the other way round. After a load the
    flags are set back, and each ``step`` counter is put where the implementation keeps it (a
    float32 tensor on the parameter's device when fused or capturable, else on the CPU).
    """
    flags = [{k: g[k] for k in IMPLEMENTATION_FLAGS if k in g} for g in optimizer.param_groups]

    def restore(opt: torch.optim.Optimizer) -> None:
        for group, kept in zip(opt.param_groups, flags):
            group.update(kept)
            on_device = bool(kept.get("fused") or kept.get("capturable"))
            for param in group["params"]:
                state = opt.state.get(param, {})
                if torch.is_tensor(state.get("step")):
                    step = state["step"]
                    state["step"] = step.to(param.device, torch.float32) if on_device else step.to("cpu")
    optimizer.register_load_state_dict_post_hook(restore)


def _all_matrices(group: Dict) -> bool:
    """True when every parameter of the group has 2 or more dims (LARS adapts those only)."""
    return all(p.ndim > 1 for p in group["params"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr * group['lr_scale']``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


@dataclass(frozen=True)
class CosineSchedule:
    """Per-iteration lr: linear warm-up from 0, then half-cosine down to ``min_lr``."""

    base_lr: float
    min_lr: float
    warmup_iters: int
    total_iters: int

    def __call__(self, iteration: int) -> float:
        if iteration < self.warmup_iters:
            return self.base_lr * iteration / self.warmup_iters
        span = max(self.total_iters - self.warmup_iters, 1)
        progress = min((iteration - self.warmup_iters) / span, 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
