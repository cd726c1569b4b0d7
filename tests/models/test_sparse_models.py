"""The sparse (visible-only) pretraining path against the dense masked path, and the
model's fast-path features: fused attention, checkpointing, torch.compile, bf16 autocast."""
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.models.tiny import TINY_DECODER, tiny_image_mae, tiny_video_mae

SMALL = dict(embed_dim=(16, 24, 32), depth=(1, 1, 1), num_heads=2, mlp_ratio=(2, 2, 2), **TINY_DECODER)
BUILDERS = {
    "image": lambda **kw: tiny_image_mae(**{**SMALL, "img_size": 64, **kw}),
    "video": lambda **kw: tiny_video_mae(**{**SMALL, **kw}),
}


def _randomize(model: nn.Module) -> nn.Module:
    """Non-trivial biases and norms, so that every parameter shapes the result."""
    for p in model.parameters():
        if p.requires_grad and p.dim() == 1:
            nn.init.normal_(p, std=0.2)
    return model


def _run(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, sparse: bool):
    """loss, pred and the gradients of loss + a fixed projection of pred (the loss alone is
    NaN when nothing is masked)."""
    model.sparse_conv = sparse
    model.zero_grad(set_to_none=True)
    loss, pred, _ = model(x, mask=mask)
    head = torch.randn(pred.shape, generator=torch.Generator().manual_seed(1))
    objective = (pred * head).mean() + (loss if bool(mask.any()) else 0.0)
    objective.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), pred.detach(), grads


def _assert_relative(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """Elementwise, relative to the largest magnitude of the reference."""
    scale = expected.abs().max().clamp_min(1e-12)
    torch.testing.assert_close(actual / scale, expected / scale, rtol=tol, atol=tol)


def _assert_equivalent(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> None:
    loss_d, pred_d, grads_d = _run(model, x, mask, sparse=False)
    loss_s, pred_s, grads_s = _run(model, x, mask, sparse=True)
    torch.testing.assert_close(loss_s, loss_d, rtol=1e-4, atol=0, equal_nan=True)
    _assert_relative(pred_s, pred_d)
    assert grads_s.keys() == grads_d.keys()
    for name in grads_d:
        _assert_relative(grads_s[name], grads_d[name])


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_sparse_equals_dense(kind, ratio):
    model = _randomize(BUILDERS[kind]())
    x = torch.randn(2, 3, *model.input_size)
    _assert_equivalent(model, x, model.random_masking(2, ratio))


@pytest.mark.parametrize("kind", ["image", "video"])
def test_sparse_equals_dense_deeper_and_without_multi_scale(kind):
    model = _randomize(BUILDERS[kind](depth=(2, 2, 1), multi_scale_decoder=False, norm_pix_loss=True))
    x = torch.randn(2, 3, *model.input_size)
    _assert_equivalent(model, x, model.random_masking(2, 0.75))


def test_sparse_is_default_and_keeps_parameter_names():
    sparse, dense = BUILDERS["video"](), BUILDERS["video"](sparse_conv=False)
    assert sparse.sparse_conv and not dense.sparse_conv
    dense.load_state_dict(sparse.state_dict(), strict=True)
    assert [n for n, _ in sparse.named_parameters()] == [n for n, _ in dense.named_parameters()]


@pytest.mark.parametrize("overrides", [dict(masked_conv=False), dict(masking="input_token")])
def test_ablations_take_the_dense_path(monkeypatch, overrides):
    import common.models.mae as mae

    def fail(*args, **kwargs):
        raise AssertionError("the sparse path must not run for this ablation")

    monkeypatch.setattr(mae, "visible_conv_stages", fail)
    model = BUILDERS["image"](**overrides)
    loss, _, _ = model(torch.randn(2, 3, *model.input_size))
    assert torch.isfinite(loss)


def test_attention_is_fused_in_encoder_and_decoder(monkeypatch):
    model = BUILDERS["video"](depth=(1, 1, 2))
    attention = [blk.attn for blk in [*model.blocks3, *model.decoder_blocks]]
    assert all(attn.fused_attn for attn in attention)
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model(torch.randn(2, 3, *model.input_size))
    assert len(calls) == len(attention)


def test_stage3_checkpointing_gives_the_same_gradients():
    model = _randomize(BUILDERS["image"](depth=(1, 1, 2)))
    x = torch.randn(2, 3, *model.input_size)
    mask = model.random_masking(2)
    loss, pred, grads = _run(model, x, mask, sparse=True)
    model.use_checkpoint = True
    loss_c, pred_c, grads_c = _run(model, x, mask, sparse=True)
    torch.testing.assert_close(loss_c, loss)
    torch.testing.assert_close(pred_c, pred)
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name])


def test_bf16_autocast_matches_float32():
    model = _randomize(BUILDERS["video"]())
    x = torch.randn(2, 3, *model.input_size)
    mask = model.random_masking(2)
    loss, pred, _ = model(x, mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_bf16, pred_bf16, _ = model(x, mask=mask)
    loss_bf16.backward()
    assert pred_bf16.dtype == torch.bfloat16
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.testing.assert_close(loss_bf16.float(), loss, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(pred_bf16.float(), pred, rtol=0.1, atol=0.1)


def _eager_and_compiled(**compile_kwargs):
    """The sparse video model's eager (loss, pred, grads) and, after ``torch.compile(**compile_kwargs)``
    on the same input and mask, the compiled loss, pred and the model (its grads from the compiled run)."""
    model = _randomize(BUILDERS["video"]())
    x = torch.randn(2, 3, *model.input_size)
    mask = model.random_masking(2)
    loss, pred, grads = _run(model, x, mask, sparse=True)
    model.zero_grad(set_to_none=True)
    loss_c, pred_c, _ = torch.compile(model, **compile_kwargs)(x, mask=mask)
    head = torch.randn(pred.shape, generator=torch.Generator().manual_seed(1))
    ((pred_c * head).mean() + loss_c).backward()
    return (loss, pred, grads), (loss_c, pred_c, model)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    # aot_eager: dynamo + AOTAutograd, no C++ build
    (loss, pred, grads), (loss_c, pred_c, model) = _eager_and_compiled(backend="aot_eager")
    torch.testing.assert_close(loss_c, loss)
    torch.testing.assert_close(pred_c, pred)
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TEST_INDUCTOR"), reason="~40 s of C++ compilation on 2 cores; set TEST_INDUCTOR=1")
def test_torch_compile_inductor_matches_eager():
    (loss, pred, grads), (loss_c, pred_c, model) = _eager_and_compiled()
    torch.testing.assert_close(loss_c, loss, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pred_c, pred, rtol=1e-4, atol=1e-5)
    for name, p in model.named_parameters():
        if name in grads:
            _assert_relative(p.grad, grads[name])
