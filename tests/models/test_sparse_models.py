"""The sparse (visible-only) pretraining path against the dense masked path, and the
model's fast-path features: fused attention, checkpointing, bf16 autocast (torch.compile:
test_compile.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.models.tiny import SMALL_BUILDERS as BUILDERS
from tests.models.tiny import assert_relative_close as _assert_relative
from tests.models.tiny import randomize_vectors as _randomize


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
