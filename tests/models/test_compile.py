"""torch.compile of the masked autoencoders (``TRAIN.COMPILE``, ``common.engine.compilation``).

- The training forward (mask drawn by the model, fixed ratio) is one graph: no graph break on
  the sparse path's gathers and scatters nor around its hand-written depthwise backward,
  in float32 and under bf16 autocast (``torch._dynamo.explain``).
- Compiled and eager training steps give the same mask, loss, ``pred`` and gradients, images
  and videos, sparse and dense: with the ``aot_eager`` backend (dynamo + AOTAutograd trace
  forward and backward as inductor does, no C++ build) for all four, with inductor for one
  (~1 min of C++ compilation on the 2-core CPU); ``TEST_INDUCTOR=1`` runs inductor on all four
  and under bf16 (several minutes).
"""
import os
from contextlib import nullcontext

import pytest
import torch
import torch._dynamo
import torch._inductor.config

from common.engine.compilation import compile_model
from tests.models.tiny import SMALL_BUILDERS as BUILDERS
from tests.models.tiny import assert_relative_close, randomize_vectors

LONG = pytest.mark.skipif(not os.environ.get("TEST_INDUCTOR"),
                          reason="inductor on every case: minutes of C++ compilation on 2 cores; set TEST_INDUCTOR=1")
PRECISIONS = {"fp32": nullcontext, "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}


def _model_and_input(kind, **overrides):
    torch.manual_seed(0)
    model = randomize_vectors(BUILDERS[kind](**overrides))
    return model, torch.randn(2, 3, *model.input_size)


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
@pytest.mark.parametrize("kind", ["image", "video"])
def test_sparse_training_forward_is_one_graph(kind, precision):
    model, x = _model_and_input(kind)
    torch._dynamo.reset()
    with PRECISIONS[precision]():
        explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_a_given_mask_breaks_the_graph_only_where_it_is_read():
    """A mask given by the caller (pictures, benchmarks) must be checked and its visible tokens
    counted on the host: the graph breaks there and nowhere else."""
    model, x = _model_and_input("video")
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x, mask=model.random_masking(2))
    assert explanation.graph_break_count > 0
    for reason in explanation.break_reasons:
        assert reason.user_stack[-1].name in ("check_mask", "_common_visible_count"), reason


@pytest.mark.slow
def test_compiled_forward_follows_a_changing_batch_size():
    """A second batch size makes dynamo recompile with a symbolic batch dimension (validation's
    last batch, another model in the process): the mask drawing must trace with it."""
    model, _ = _model_and_input("image")
    torch._dynamo.reset()
    compile_model(model, "default", backend="aot_eager")
    for batch in (2, 3, 5):
        x = torch.randn(batch, 3, *model.input_size)
        torch.manual_seed(batch)
        loss, _, mask = model(x)
        torch.manual_seed(batch)
        eager_loss, _, eager_mask = model._call_impl(x)  # the module's uncompiled call
        assert torch.equal(mask, eager_mask) and mask.shape[0] == batch
        torch.testing.assert_close(loss, eager_loss)


def _training_step(model, x, precision):
    """Loss, pred, mask and every gradient of loss + a fixed projection of pred; the model draws
    its mask from the global RNG, seeded alike for each call."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with PRECISIONS[precision]():
        loss, pred, mask = model(x)
    head = torch.randn(pred.shape, generator=torch.Generator().manual_seed(2))
    ((pred.float() * head).mean() + loss).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), pred.detach(), mask, grads


def _assert_compiled_matches_eager(kind, sparse, backend, precision="fp32", tol=1e-4):
    model, x = _model_and_input(kind, sparse_conv=sparse)
    loss, pred, mask, grads = _training_step(model, x, precision)
    torch._dynamo.reset()
    compile_model(model, "default", backend=backend)
    with torch._inductor.config.patch(fallback_random=True):  # inductor draws the mask as eager does
        loss_c, pred_c, mask_c, grads_c = _training_step(model, x, precision)
    assert torch.equal(mask_c, mask)
    torch.testing.assert_close(loss_c, loss, rtol=tol, atol=0)
    assert_relative_close(pred_c.float(), pred.float(), tol)
    assert grads_c.keys() == grads.keys() and len(grads) > 20
    for name in grads:
        assert_relative_close(grads_c[name], grads[name], tol)


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("kind", ["image", "video"])
def test_compiled_training_step_matches_eager(kind, sparse):
    _assert_compiled_matches_eager(kind, sparse, backend="aot_eager")


@pytest.mark.slow
def test_inductor_training_step_matches_eager():
    _assert_compiled_matches_eager("image", True, backend="inductor")


@pytest.mark.slow
@LONG
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("kind", ["image", "video"])
def test_inductor_training_step_matches_eager_everywhere(kind, sparse):
    _assert_compiled_matches_eager(kind, sparse, backend="inductor")


@pytest.mark.slow
@LONG
@pytest.mark.parametrize("kind", ["image", "video"])
def test_inductor_training_step_matches_eager_under_bf16(kind):
    # bf16 rounding differs where inductor fuses what eager rounds between ops
    _assert_compiled_matches_eager(kind, True, backend="inductor", precision="bf16", tol=5e-2)
