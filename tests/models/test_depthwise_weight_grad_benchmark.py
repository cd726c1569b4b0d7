"""benchmarks/depthwise_weight_grad.py: both ways agree and every stage's figures are printed."""
import json

import pytest
import torch

from tests.scripts import registered_script


@pytest.fixture(scope="module")
def bench():
    yield from registered_script("benchmarks/depthwise_weight_grad.py", "depthwise_weight_grad_benchmark")


def test_the_strided_sum_is_the_same_gradient(bench):
    windows, grad = torch.randn(3, 6, 6, 4, 2), torch.randn(4, 1, 2, 2, 2)  # kernel (3, 5, 5)
    torch.testing.assert_close(bench.strided_weight_grad(windows, grad), bench._weight_grad(windows, grad))


def test_every_stage_is_compared_and_the_last_line_is_json(bench, capsys):
    figures = bench.main(["--scale", "0.02", "--reps", "1", "--threads", "1"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == figures
    for name, *_ in bench.STAGES:
        assert figures[f"{name}_aware_s"] > 0 and figures[f"{name}_strided_s"] > 0
        assert figures[f"{name}_over_strided"] == figures[f"{name}_aware_s"] / figures[f"{name}_strided_s"]
