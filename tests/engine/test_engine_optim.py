"""Parameter groups (no weight decay, layer decay), optimizers, lr scaling and the schedule."""
import io
import math
import sys

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


# -- fused optimizers ---------------------------------------------------------------------------

FUSED_KERNELS = {"adamw": "_fused_adamw_", "sgd": "_fused_sgd_"}


def _count_fused_calls(monkeypatch, method):
    """Count the calls of ``method``'s fused kernel (torch looks it up at every step)."""
    calls = []
    name = FUSED_KERNELS[method]
    kernel = getattr(torch, name)

    def counting(*args, **kwargs):
        calls.append(name)
        return kernel(*args, **kwargs)
    monkeypatch.setattr(torch, name, counting)
    return calls


def _pretraining_model():
    torch.manual_seed(0)
    return create_model("convmae_convvit_small_patch16", img_size=32, embed_dim=[8, 8, 16], depth=[1, 1, 2],
                        num_heads=2, mlp_ratio=[2, 2, 2], decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)


def _train(model, optimizer, steps, *, first=0, clip=0.5):
    """``steps`` steps of the masked autoencoder on fixed inputs and masks (step ``i`` draws from
    seed ``i``), the lr following a cosine schedule with warm-up, gradients clipped."""
    schedule = CosineSchedule(base_lr=1e-2, min_lr=1e-4, warmup_iters=2, total_iters=8)
    for step in range(first, first + steps):
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(2, 3, 32, 32, generator=generator)
        mask = (torch.rand(2, 4, generator=generator).argsort(1) < 2).float()  # 2 of 4 tokens masked
        set_lr(optimizer, schedule(step))
        loss, _, _ = model(x, mask=mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _without_key_bias(name, param):
    """The attention key bias has a gradient of 0 up to rounding (softmax ignores a shift shared by
    all keys), which Adam normalises into updates of +-lr that differ with the rounding: left out."""
    if name.endswith("attn.qkv.bias"):
        q, _, v = param.chunk(3)
        return torch.cat([q, v])
    return param


def _assert_same_parameters(a, b):
    """Equal within torch's float32 tolerance (rtol 1.3e-6, atol 1e-5)."""
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(_without_key_bias(name, pa), _without_key_bias(name, pb),
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("method", ["adamw", "sgd"])
def test_fused_is_the_default_and_steps_with_the_fused_kernel(monkeypatch, classifier, method):
    calls = _count_fused_calls(monkeypatch, method)
    opt = build_optimizer(classifier, method=method, lr=0.1, weight_decay=0.05, layer_decay=0.75)
    assert all(g["fused"] for g in opt.param_groups)
    for p in classifier.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert len(calls) == len(opt.param_groups)  # one kernel call per group
    unfused = build_optimizer(classifier, method=method, lr=0.1, weight_decay=0.05, fused=False)
    unfused.step()
    assert not any(g["fused"] for g in unfused.param_groups) and len(calls) == len(opt.param_groups)


@pytest.mark.parametrize("method", ["adamw", "sgd"])
def test_fused_and_unfused_train_to_the_same_parameters(method):
    """Layer decay (5 lr scales), weight-decay groups, warm-up + cosine lr, gradient clipping."""
    models = [_pretraining_model(), _pretraining_model()]
    optimizers = [build_optimizer(m, method=method, lr=1e-2, weight_decay=0.05, layer_decay=0.75,
                                  betas=(0.9, 0.95), fused=fused) for m, fused in zip(models, (True, False))]
    assert len({g["lr_scale"] for g in optimizers[0].param_groups}) > 2
    assert {g["weight_decay"] for g in optimizers[0].param_groups} == {0.0, 0.05}
    before = [p.detach().clone() for p in models[0].parameters()]
    for model, optimizer in zip(models, optimizers):
        _train(model, optimizer, 6)
    assert all(not torch.equal(b, p) for b, p in zip(before, models[0].parameters()) if p.requires_grad)
    _assert_same_parameters(*models)


@pytest.mark.parametrize("saved_fused", [False, True], ids=["unfused-into-fused", "fused-into-unfused"])
def test_optimizer_state_loads_into_the_other_implementation(monkeypatch, saved_fused):
    """A checkpoint of one implementation resumes with the other (old checkpoints were unfused):
    the loaded optimizer keeps its own implementation and continues as the saved one would."""
    def build(model, fused):
        return build_optimizer(model, method="adamw", lr=1e-2, weight_decay=0.05, layer_decay=0.75,
                               betas=(0.9, 0.95), fused=fused)
    saved_model = _pretraining_model()
    saved_opt = build(saved_model, saved_fused)
    _train(saved_model, saved_opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": saved_model.state_dict(), "optimizer": saved_opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer)

    resumed_model = _pretraining_model()
    resumed_model.load_state_dict(checkpoint["model"])
    resumed_opt = build(resumed_model, not saved_fused)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    assert all(bool(g["fused"]) is not saved_fused for g in resumed_opt.param_groups)
    steps = [s["step"] for s in resumed_opt.state.values()]
    assert all(s.dtype == torch.float32 and s.device.type == "cpu" and float(s) == 3 for s in steps)
    calls = _count_fused_calls(monkeypatch, "adamw")
    _train(resumed_model, resumed_opt, 3, first=3)
    assert len(calls) == (0 if saved_fused else 3 * len(resumed_opt.param_groups))
    _train(saved_model, saved_opt, 3, first=3)
    _assert_same_parameters(resumed_model, saved_model)


def test_no_fused_kernel_for_the_device_falls_back(monkeypatch, classifier):
    """Where torch has no fused kernel for the parameters' device it refuses ``fused=True``; the
    optimizer is then torch's default one."""
    monkeypatch.setattr(sys.modules["torch.optim.optimizer"], "_get_fused_kernels_supported_devices", lambda: ["cuda"])
    opt = build_optimizer(classifier, method="adamw", lr=0.1, weight_decay=0.05)
    assert not any(g["fused"] for g in opt.param_groups)
    for p in classifier.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # a fused optimizer would refuse to step here
