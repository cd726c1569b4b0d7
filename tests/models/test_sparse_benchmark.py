"""benchmarks/pretrain_step.py on tiny workloads: FLOP handles, memory probe, step timing."""
import argparse

import pytest
import torch

from tests.models.tiny import TINY_DECODER
from tests.scripts import registered_script

TINY = dict(embed_dim=(16, 24, 32), depth=(1, 1, 1), num_heads=2, mlp_ratio=(2, 2, 2), **TINY_DECODER)


@pytest.fixture(scope="module")
def bench():
    yield from registered_script("benchmarks/pretrain_step.py", "pretrain_step_benchmark")


def _video(bench):
    return bench.Workload("video", "videoconvmae_small_patch16", dict(num_frames=4, img_size=32, **TINY),
                          (3, 4, 32, 32), 0.75)


def test_forward_flops_count_attention_and_sparse_depthwise(bench):
    from fvcore.nn import FlopCountAnalysis

    model, _, x, mask = bench.build(_video(bench), 2, torch.device("cpu"))
    counter = FlopCountAnalysis(bench._ForwardWithMask(model), (x, mask))
    counter.set_op_handle(**bench.EXTRA_OP_HANDLES)
    counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_op = counter.by_operator()
    assert by_op["PythonOp._VisibleDepthwise"] > 0 and by_op["scaled_dot_product_attention"] > 0
    gmacs = bench.forward_gmacs(_video(bench), 2, torch.device("cpu"))
    assert 0 < gmacs["sparse"] < gmacs["dense"]


def test_step_times_and_memory_probe(bench):
    args = argparse.Namespace(batch=1, warmup=1, reps=2, threads=1)
    times = bench.step_times(_video(bench), args, torch.device("cpu"))
    assert {k: len(v) for k, v in times.items()} == {"dense": 2, "sparse": 2}
    memory = bench.step_memory(_video(bench), "sparse", args, torch.device("cpu"))  # a subprocess
    assert 0 < memory["peak_mib"] < memory["process_peak_mib"]


@pytest.mark.slow
def test_compile_comparison_reports_the_issue_keys(bench, capsys):
    """``--compile``: eager / fused / compiled steps alternate; ratios relative to the eager step,
    compilation apart (``aot_eager`` here: inductor's C++ build is a benchmark's business)."""
    args = argparse.Namespace(batch=2, warmup=0, reps=2, compile_backend="aot_eager", second_process=False,
                              profile=0)
    figures = bench.run_compile_comparison(_video(bench), args, torch.device("cpu"))
    for variant in ("fused", "compiled"):
        ratio = figures[f"video_{variant}_over_eager_step"]
        assert ratio == figures[f"video_{variant}_step_s"] / figures["video_eager_step_s"] > 0
    assert figures["video_compile_s"] == pytest.approx(figures["video_compiled_first_step_s"]
                                                       - figures["video_compiled_step_s"])
    assert all(figures[f"video_{v}_peak_mib"] > 0 for v in bench.STEP_VARIANTS)
    assert "compiled step" in capsys.readouterr().out


def test_training_variants_are_built_as_the_engine_builds_them(bench):
    from common.engine.compilation import is_compiled

    built = {v: bench.build_training_variant(_video(bench), v, torch.device("cpu"), backend="aot_eager")
             for v in bench.STEP_VARIANTS}
    assert [bool(g["fused"]) for g in built["eager"][1].param_groups] == [False, False]
    assert all(g["fused"] for v in ("fused", "compiled") for g in built[v][1].param_groups)
    assert [is_compiled(m) for m, _ in built.values()] == [False, False, True]
    weights = [m.state_dict() for m, _ in built.values()]  # same seed: same initial weights
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])
