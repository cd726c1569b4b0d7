"""Forward cost of the §2.3 detection backbone: windowed vs all-global stage 3 (ConvMAE-B).

Three ``features_only`` ConvMAE-B backbones, batch 1, eval mode, no grad:

- ``window``: the paper's detection variant, 7x7 windows (every other local block shifted by
  half a window) in all stage-3 blocks but the 1st, 4th, 7th and 11th, relative position
  biases in all blocks (one table for the global, one for the local blocks);
- ``global``: the same detection backbone with all 11 stage-3 blocks global (the bias kept),
  so ``window_over_global_*`` isolates the windows;
- ``plain``: stage 3 all global attention without any bias (the plain backbone, as for
  segmentation): ``window_over_plain_*``.

Time: in one process the variants alternate, repetition after repetition, and the medians
of wall and CPU time (``time.process_time``, all threads of this process; less sensitive to
other jobs on a shared machine) are compared. Memory: a fresh subprocess per variant and size
builds the model, then measures the peak resident set of its first forward above the
resident set just before it (``VmHWM`` reset through
``/proc/self/clear_refs``; glibc serves allocations of 64 KiB or more with mmap, so freed
tensors leave the resident set at once): the forward's activations and temporaries, weights
excluded. Linux only for memory.

The last line is one JSON object. Example (the figures in the README)::

    python benchmarks/dense_backbone.py --sizes 512 1024 --repeats 3 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import imageconvmae.models  # noqa: E402,F401  registers the models
from common.models import CONVVIT_SIZES, create_model  # noqa: E402

MODEL = "convvit_base_patch16"
WINDOW = 7
VARIANTS = {
    "window": {"window_size": WINDOW},
    "global": {"window_size": WINDOW, "global_blocks": tuple(range(CONVVIT_SIZES["base"].depth[2]))},
    "plain": {},
}
MMAP_THRESHOLD = str(64 * 1024)


def build(variant: str, size: int) -> torch.nn.Module:
    """The ConvMAE-B ``features_only`` backbone of ``variant`` for ``size`` x ``size`` inputs."""
    return create_model(MODEL, features_only=True, img_size=size, **VARIANTS[variant]).eval()


def time_forwards(size: int, repeats: int) -> Dict[str, Dict[str, float]]:
    """Median wall and CPU seconds of one forward per variant, the variants alternating."""
    models = {name: build(name, size) for name in VARIANTS}
    x = torch.randn(1, 3, size, size)
    wall: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    cpu: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    with torch.no_grad():
        for _ in range(repeats):  # no warm-up: at 1024 a forward takes tens of seconds here
            for name, model in models.items():
                w0, c0 = time.perf_counter(), time.process_time()
                model(x)
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    return {name: {"wall_s": statistics.median(wall[name]), "cpu_s": statistics.median(cpu[name])}
            for name in VARIANTS}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def forward_peak_mib(variant: str, size: int) -> Dict[str, float]:
    """(In the measuring subprocess.) Peak resident memory of one forward above its start
    (CPU kernels allocate nothing lazily that a warm-up forward would have to cache)."""
    model = build(variant, size)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        model(x)
        peak = _status_kib("VmHWM")
    return {"forward_peak_mib": (peak - before) / 1024, "process_peak_mib": peak / 1024}


def measure_memory(variant: str, size: int, threads: int) -> Dict[str, float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-of", variant, "--sizes", str(size),
           "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-of", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(forward_peak_mib(args.memory_of, args.sizes[0])))
        return
    result: Dict[str, object] = {"model": MODEL, "batch": 1, "threads": args.threads,
                                 "load_avg_1min": os.getloadavg()[0]}
    for size in args.sizes:
        times = time_forwards(size, args.repeats)
        memory = {name: measure_memory(name, size, args.threads) for name in VARIANTS}
        for name in VARIANTS:
            print(f"{size}x{size} {name:6s}: wall {times[name]['wall_s']:.2f} s, cpu {times[name]['cpu_s']:.2f} s, "
                  f"forward peak {memory[name]['forward_peak_mib']:.0f} MiB "
                  f"(process {memory[name]['process_peak_mib']:.0f} MiB)")
        result[str(size)] = {
            f"{name}_{k}": round(v, 3) for name in VARIANTS for k, v in {**times[name], **memory[name]}.items()
        }
        for base in ("global", "plain"):
            result[str(size)].update({
                f"window_over_{base}_time": round(times["window"]["cpu_s"] / times[base]["cpu_s"], 3),
                f"window_over_{base}_wall": round(times["window"]["wall_s"] / times[base]["wall_s"], 3),
                f"window_over_{base}_mem": round(memory["window"]["forward_peak_mib"]
                                                 / memory[base]["forward_peak_mib"], 3),
            })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
