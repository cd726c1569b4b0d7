"""Optimizers: parameter groups (no weight decay, layer-wise lr decay), lr scaling, schedules.

Layer-wise lr decay follows the ConvMAE contract (DESIGN.md §2): the patch embeddings, the
position embedding and all of stages 1-2 are layer 0, ``blocks3.i`` is layer ``i + 1`` and
everything else (``fc_norm``, ``head``, ...) is the last layer ``len(blocks3) + 1``. The layer
of every parameter comes from the model's timm ``group_matcher`` through timm's own
``group_parameters``. A group's lr is ``lr * lr_scale`` with
``lr_scale = layer_decay ** (last_layer - layer_id)``.

timm's ``param_groups_layer_decay`` gives every parameter the same ``lr_scale`` and weight
decay (tests/models/test_timm_interface.py), but orders its groups differently and, without
layer decay, splits them per layer; the group layout here is kept so that optimizer states
in existing checkpoints still resume.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import timm.optim
import torch
from timm.models import group_parameters
from torch import nn

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
) -> torch.optim.Optimizer:
    """AdamW, LARS (timm's; trust ratio on matrices only, as in MAE) or SGD over ``param_groups``."""
    groups = param_groups(model, weight_decay=weight_decay, layer_decay=layer_decay)
    if method == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    if method == "lars":
        for group in groups:
            group["always_adapt"] = _all_matrices(group)
        return timm.optim.Lars(groups, lr=lr, momentum=momentum)
    if method == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"SOLVER.OPTIMIZING_METHOD must be adamw, lars or sgd, got {method!r}")


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
