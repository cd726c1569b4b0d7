"""benchmarks/dense_backbone.py: the training measurement (saved bytes, ratios, subprocess)."""
import argparse

import pytest
import torch
from torch import nn
from tests.scripts import registered_script



@pytest.fixture(scope="module")
def bench():
    yield from registered_script("benchmarks/dense_backbone.py", "dense_backbone_benchmark")


class _TwoLevels(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x):
        hidden = torch.relu(self.fc(x))
        return [hidden, hidden * 3.0]


def test_saved_for_backward_counts_activations_once_and_not_parameters(bench):
    model, x = _TwoLevels(), torch.randn(2, 4)
    loss, saved = bench.saved_for_backward(model, x)
    hidden = torch.relu(model.fc(x))
    assert torch.allclose(loss, hidden.mean() + (hidden * 3.0).mean())
    # linear keeps its input x (2 x 4 floats) and its weight (a parameter, not counted); relu its
    # output (2 x 8); mean and the product by a constant keep nothing.
    assert saved == (2 * 4 + 2 * 8) * 4


def test_ratios_divide_the_window_figures_by_each_base(bench):
    figures = {"window": {"t": 1.0, "m": 3.0}, "global": {"t": 4.0, "m": 6.0}, "plain": {"t": 2.0, "m": 1.5}}
    assert bench.ratios(figures, {"time": "t", "mem": "m"}) == {
        "window_over_global_time": 0.25, "window_over_global_mem": 0.5,
        "window_over_plain_time": 0.5, "window_over_plain_mem": 2.0}


def _args(mem_limit_gib):
    return argparse.Namespace(mode="train", threads=1, repeats=2, mem_limit_gib=mem_limit_gib)


def test_train_step_cost_in_a_subprocess(bench):
    cost = bench.measure("window", 64, _args(4.0))
    assert 0 < cost["train_saved_mib"] and 0 < cost["train_peak_mib"] < cost["train_process_peak_mib"]
    assert cost["train_cpu_s"] > 0 and cost["train_wall_s"] > 0


def test_train_step_over_the_memory_limit_fails_cleanly(bench):
    with pytest.raises(RuntimeError, match=r"train measurement of window at 64x64 failed \(address space limited"):
        bench.measure("window", 64, _args(0.01))
