"""Parameter groups (no weight decay, layer decay), optimizers, lr scaling and the schedule."""
import math

import pytest
import torch
from torch import nn

from common.models import create_model
from common.optim import (CosineSchedule, build_optimizer, layer_ids, param_groups, scaled_lr, set_lr,
                          skips_weight_decay)

TINY = dict(img_size=32, embed_dim=[8, 8, 16], depth=[1, 1, 3], num_heads=2, mlp_ratio=[2, 2, 2], num_classes=5)


@pytest.fixture
def classifier():
    return create_model("convvit_small_patch16", **TINY)


def _group_of(groups, param):
    return next(g for g in groups if any(p is param for p in g["params"]))


def test_layer_ids_follow_convmae_contract(classifier):
    ids = layer_ids(classifier)
    assert ids["patch_embed1.proj.weight"] == 0 and ids["patch_embed4.weight"] == 0
    assert ids["pos_embed"] == 0
    assert ids["blocks1.0.conv1.weight"] == 0 and ids["blocks2.0.mlp.fc1.weight"] == 0
    assert ids["blocks3.0.attn.qkv.weight"] == 1 and ids["blocks3.2.norm1.weight"] == 3
    assert ids["fc_norm.weight"] == 4 and ids["head.bias"] == 4


def test_no_weight_decay_rule():
    assert skips_weight_decay("norm.weight", torch.zeros(3))
    assert skips_weight_decay("head.bias", torch.zeros(3))
    assert skips_weight_decay("pos_embed", torch.zeros(1, 4, 3))
    assert skips_weight_decay("mask_token", torch.zeros(1, 1, 3))
    assert skips_weight_decay("decoder_pos_embed", torch.zeros(1, 4, 3))
    assert not skips_weight_decay("head.weight", torch.zeros(3, 3))


def test_param_groups_layer_decay_and_weight_decay(classifier):
    groups = param_groups(classifier, weight_decay=0.05, layer_decay=0.5)
    params = dict(classifier.named_parameters())
    head_w = _group_of(groups, params["head.weight"])
    assert head_w["lr_scale"] == 1.0 and head_w["weight_decay"] == 0.05 and head_w["layer_id"] == 4
    assert _group_of(groups, params["head.bias"])["weight_decay"] == 0.0
    block0 = _group_of(groups, params["blocks3.0.attn.qkv.weight"])
    assert block0["layer_id"] == 1 and block0["lr_scale"] == pytest.approx(0.5 ** 3)
    embed = _group_of(groups, params["patch_embed1.proj.weight"])
    assert embed["layer_id"] == 0 and embed["lr_scale"] == pytest.approx(0.5 ** 4)
    pos = _group_of(groups, params["pos_embed"])
    assert pos["weight_decay"] == 0.0 and pos["layer_id"] == 0
    assert sum(len(g["params"]) for g in groups) == len(params)


def test_param_groups_without_layer_decay_are_two(classifier):
    groups = param_groups(classifier, weight_decay=0.05)
    assert len(groups) == 2 and all(g["lr_scale"] == 1.0 for g in groups)


def test_param_groups_skip_frozen(classifier):
    for name, p in classifier.named_parameters():
        p.requires_grad = name.startswith("head.")
    groups = param_groups(classifier, weight_decay=0.0)
    assert sum(len(g["params"]) for g in groups) == 2


def test_pretraining_model_groups_exclude_mask_token_decay():
    model = create_model("convmae_convvit_small_patch16", img_size=32, embed_dim=[8, 8, 16], depth=[1, 1, 1],
                         num_heads=2, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    groups = param_groups(model, weight_decay=0.05)
    assert _group_of(groups, model.mask_token)["weight_decay"] == 0.0


@pytest.mark.parametrize("method,cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_build_optimizer_methods(classifier, method, cls):
    opt = build_optimizer(classifier, method=method, lr=0.1, weight_decay=0.05, layer_decay=0.75, betas=(0.9, 0.95))
    assert isinstance(opt, cls)
    set_lr(opt, 1.0)
    assert max(g["lr"] for g in opt.param_groups) == 1.0
    assert min(g["lr"] for g in opt.param_groups) == pytest.approx(0.75 ** 4)


def test_lars_adapts_matrices_only(classifier):
    opt = build_optimizer(classifier, method="lars", lr=0.1, weight_decay=0.0)
    for group in opt.param_groups:
        assert group["always_adapt"] == all(p.ndim > 1 for p in group["params"])


def test_unknown_method_fails(classifier):
    with pytest.raises(ValueError, match="OPTIMIZING_METHOD"):
        build_optimizer(classifier, method="adam9", lr=0.1, weight_decay=0.0)


def test_scaled_lr():
    assert scaled_lr(1.5e-4, 1024) == pytest.approx(6e-4)
    assert scaled_lr(1e-3, 256) == pytest.approx(1e-3)


def test_cosine_schedule_values():
    sched = CosineSchedule(base_lr=1.0, min_lr=0.1, warmup_iters=10, total_iters=110)
    assert sched(0) == 0.0
    assert sched(5) == pytest.approx(0.5)
    assert sched(10) == pytest.approx(1.0)
    assert sched(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert sched(110) == pytest.approx(0.1)
    assert sched(500) == pytest.approx(0.1)
    assert all(sched(i) >= sched(i + 1) for i in range(10, 110))


def test_set_lr_uses_lr_scale():
    p1, p2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [p1], "lr_scale": 0.5}, {"params": [p2]}], lr=0.0)
    set_lr(opt, 2.0)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 2.0]
