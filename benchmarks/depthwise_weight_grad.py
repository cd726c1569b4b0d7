"""The weight gradient of the sparse depthwise conv: summing the per-block taps where they lie.

``common.layers.sparse_conv._weight_grad`` gets the gradient of a depthwise kernel as one more
depthwise conv with the visible blocks folded into the channels, (1, M * C, *kernel), then sums
over the M blocks. On the CPU that conv returns its output channels-last, so memory runs
(*kernel, M, C): summing over M of the (M, C, *kernel) view strides across memory, while the
layout-aware sum (what the library does) reads it in order. This prints both, side by side in one
process (alternating, medians of wall and CPU time), for the conv stages of the pretraining step
of ``benchmarks/pretrain_step.py`` (batch 2): VideoConvMAE-B at 90 % tubes (160 of 1568 tokens
visible per clip) and ConvMAE-B at 75 % (49 of 196), with their depthwise kernels.

The last line is one JSON object (``*_over_strided``: layout-aware / strided time). Example::

    python benchmarks/depthwise_weight_grad.py --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.layers.sparse_conv import _conv, _weight_grad  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

# (name, visible blocks M = batch x visible tokens, channels, block per token, depthwise kernel)
STAGES: List[Tuple[str, int, int, Tuple[int, ...], Tuple[int, ...]]] = [
    ("video_stage1", 2 * 160, 256, (1, 4, 4), (3, 5, 5)),
    ("video_stage2", 2 * 160, 384, (1, 2, 2), (3, 5, 5)),
    ("image_stage1", 2 * 49, 256, (4, 4), (5, 5)),
    ("image_stage2", 2 * 49, 384, (2, 2), (5, 5)),
]


def strided_weight_grad(windows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The same gradient summed over the (M, C, 1, *kernel) view whatever the conv's layout."""
    *window, m, c = windows.shape
    inputs = windows.reshape(1, *window, m * c).movedim(-1, 1)
    kernels = grad.movedim(-1, 1).reshape(m * c, 1, *grad.shape[1:-1])
    taps = _conv(len(window))(inputs, kernels, groups=m * c)
    return taps.view(m, c, 1, *taps.shape[2:]).sum(0, dtype=torch.float32)


def timed(fn: Callable[[], torch.Tensor]) -> Tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(m: int, c: int, block: Tuple[int, ...], kernel: Tuple[int, ...], reps: int) -> Dict[str, float]:
    """Medians of both ways, alternating; they must agree."""
    windows = torch.randn(*[b + k - 1 for b, k in zip(block, kernel)], m, c)
    grad = torch.randn(m, *block, c)
    torch.testing.assert_close(_weight_grad(windows, grad), strided_weight_grad(windows, grad), rtol=1e-4, atol=1e-3)
    times: Dict[str, List[Tuple[float, float]]] = {"aware": [], "strided": []}
    for _ in range(reps):
        times["aware"].append(timed(lambda: _weight_grad(windows, grad)))
        times["strided"].append(timed(lambda: strided_weight_grad(windows, grad)))
    median = {way: [statistics.median(t[i] for t in runs) for i in (0, 1)] for way, runs in times.items()}
    return {"aware_s": median["aware"][0], "strided_s": median["strided"][0],
            "over_strided": median["aware"][0] / median["strided"][0],
            "over_strided_cpu": median["aware"][1] / median["strided"][1]}


def main(argv: List[str] | None = None) -> Dict[str, float]:
    configure_process()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--reps", type=int, default=9, help="timed calls per way")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the visible blocks (tests: small)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    figures: Dict[str, float] = {"threads": torch.get_num_threads()}
    for name, m, c, block, kernel in STAGES:
        result = compare(max(1, round(m * args.scale)), c, block, kernel, args.reps)
        print(f"{name}: layout-aware {1e3 * result['aware_s']:.1f} ms, strided {1e3 * result['strided_s']:.1f} ms "
              f"-> {result['over_strided']:.3f} (CPU time {result['over_strided_cpu']:.3f})", flush=True)
        figures.update({f"{name}_{key}": value for key, value in result.items()})
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
