"""Forward and training cost of the §2.3 detection backbone: windowed vs all-global stage 3 (ConvMAE-B).

Three ``features_only`` ConvMAE-B backbones, batch 1:

- ``window``: the paper's detection variant, 7x7 windows (every other local block shifted by
  half a window) in all stage-3 blocks but the 1st, 4th, 7th and 11th, relative position
  biases in all blocks (one table for the global, one for the local blocks);
- ``global``: the same detection backbone with all 11 stage-3 blocks global (the bias kept),
  so ``window_over_global_*`` isolates the windows;
- ``plain``: stage 3 all global attention without any bias (the plain backbone, as for
  segmentation): ``window_over_plain_*``.

``--mode forward`` (eval mode, no grad). Time: in one process the variants alternate,
repetition after repetition, and the medians of wall and CPU time (``time.process_time``, all
threads of this process; less sensitive to other jobs on a shared machine) are compared.
Memory: a fresh subprocess per variant and size builds the model, then measures the peak
resident set of its first forward above the resident set just before it (``VmHWM`` reset
through ``/proc/self/clear_refs``; glibc serves allocations of 64 KiB or more with mmap, so freed
tensors leave the resident set at once): the forward's activations and temporaries, weights
excluded. Linux only for memory.

``--mode train`` (train mode, what detection finetuning pays): one fresh subprocess per variant
and size runs ``--repeats`` forward + backward steps (loss: the sum of the four feature maps'
means) and reports the peak resident set of the first step above its start (activations kept
for backward, backward temporaries and the parameter gradients; weights excluded), the bytes
autograd saves for backward (parameters excluded: exact, independent of the allocator), and
the median CPU and wall seconds of a step. Autograd keeps every block's attention weights, so
memory is a sum over blocks, not a maximum as in the forward. All-global training at 1024
keeps 11 x 768 MiB of attention weights alone (~14 GiB saved for backward in all, extrapolated
from 768), so on a shared 24 GiB machine train at 768. The subprocess's address space is
limited (``--mem-limit-gib`` above its size after building the model): a size too large fails
cleanly instead of exhausting the machine.

The last line is one JSON object. Examples (the figures in the README)::

    python benchmarks/dense_backbone.py --sizes 512 1024 --repeats 2 --threads 2
    python benchmarks/dense_backbone.py --mode train --sizes 512 768 --repeats 2 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import imageconvmae.models  # noqa: E402,F401  registers the models
from common.models import CONVVIT_SIZES, create_model  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

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


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set


def forward_peak_mib(variant: str, size: int) -> Dict[str, float]:
    """(In the measuring subprocess.) Peak resident memory of one forward above its start
    (CPU kernels allocate nothing lazily that a warm-up forward would have to cache)."""
    model = build(variant, size)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        before = _status_kib("VmRSS")
        _reset_peak()
        model(x)
        peak = _status_kib("VmHWM")
    return {"forward_peak_mib": (peak - before) / 1024, "process_peak_mib": peak / 1024}


def train_loss(features: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of the feature maps' means: a scalar whose gradient reaches every level."""
    return sum(f.mean() for f in features)


def saved_for_backward(model: torch.nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """``train_loss`` of ``model(x)`` and the bytes of the distinct storages autograd saves for
    its backward, the model's parameters excluded (views of one storage count once)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: Dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = train_loss(model(x))
    return loss, sum(saved.values())


def train_step_cost(variant: str, size: int, repeats: int, mem_limit_gib: float) -> Dict[str, float]:
    """(In the measuring subprocess.) Peak resident memory of the first forward + backward above
    its start, bytes saved for backward, median CPU/wall seconds of ``repeats`` steps."""
    model = build(variant, size).train()
    x = torch.randn(1, 3, size, size)
    limit = _status_kib("VmSize") * 1024 + int(mem_limit_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    wall, cpu = [], []
    for step in range(repeats):
        model.zero_grad(set_to_none=True)  # every step allocates its gradients, as the first
        w0, c0 = time.perf_counter(), time.process_time()
        if step == 0:
            before = _status_kib("VmRSS")
            _reset_peak()
            loss, saved = saved_for_backward(model, x)
        else:
            loss = train_loss(model(x))
        loss.backward()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        if step == 0:
            peak = _status_kib("VmHWM")
    return {"train_peak_mib": (peak - before) / 1024, "train_process_peak_mib": peak / 1024,
            "train_saved_mib": saved / 2**20, "train_cpu_s": statistics.median(cpu),
            "train_wall_s": statistics.median(wall)}


def measure(variant: str, size: int, args: argparse.Namespace) -> Dict[str, float]:
    """Run ``forward_peak_mib`` (``args.mode`` forward) or ``train_step_cost`` in a fresh process."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", variant, "--mode", args.mode,
           "--sizes", str(size), "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--mem-limit-gib", str(args.mem_limit_gib)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        limit = f" (address space limited to {args.mem_limit_gib} GiB above the built model)"
        raise RuntimeError(f"{args.mode} measurement of {variant} at {size}x{size} failed"
                           f"{limit if args.mode == 'train' else ''}:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def ratios(figures: Dict[str, Dict[str, float]], keys: Dict[str, str]) -> Dict[str, float]:
    """``window_over_{base}_{name}``: the window variant's figure ``keys[name]`` over each base's."""
    return {f"window_over_{base}_{name}": round(figures["window"][key] / figures[base][key], 3)
            for base in ("global", "plain") for name, key in keys.items()}


def train_figures(size: int, args: argparse.Namespace) -> Dict[str, float]:
    """The training figures of every variant at ``size`` (one subprocess after the other)."""
    figures = {name: measure(name, size, args) for name in VARIANTS}
    for name, f in figures.items():
        print(f"{size}x{size} {name:6s}: train step cpu {f['train_cpu_s']:.2f} s, wall {f['train_wall_s']:.2f} s, "
              f"peak {f['train_peak_mib']:.0f} MiB (process {f['train_process_peak_mib']:.0f} MiB), "
              f"saved for backward {f['train_saved_mib']:.0f} MiB")
    result = {f"{name}_{k}": round(v, 3) for name, f in figures.items() for k, v in f.items()}
    result.update(ratios(figures, {"train_time": "train_cpu_s", "train_wall": "train_wall_s",
                                   "train_mem": "train_peak_mib", "train_saved": "train_saved_mib"}))
    return result


def forward_figures(size: int, args: argparse.Namespace) -> Dict[str, float]:
    """The forward figures of every variant at ``size``: timing in-process, memory in subprocesses."""
    times = time_forwards(size, args.repeats)
    memory = {name: measure(name, size, args) for name in VARIANTS}
    for name in VARIANTS:
        print(f"{size}x{size} {name:6s}: wall {times[name]['wall_s']:.2f} s, cpu {times[name]['cpu_s']:.2f} s, "
              f"forward peak {memory[name]['forward_peak_mib']:.0f} MiB "
              f"(process {memory[name]['process_peak_mib']:.0f} MiB)")
    figures = {name: {**times[name], **memory[name]} for name in VARIANTS}
    result = {f"{name}_{k}": round(v, 3) for name, f in figures.items() for k, v in f.items()}
    result.update(ratios(figures, {"time": "cpu_s", "wall": "wall_s", "mem": "forward_peak_mib"}))
    return result


def main() -> None:
    configure_process()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("forward", "train"), default="forward")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mem-limit-gib", type=float, default=12.0,
                        help="address space a measuring subprocess may add after building its model")
    parser.add_argument("--measure", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        size = args.sizes[0]
        cost = (forward_peak_mib(args.measure, size) if args.mode == "forward"
                else train_step_cost(args.measure, size, args.repeats, args.mem_limit_gib))
        print(json.dumps(cost))
        return
    result: Dict[str, object] = {"model": MODEL, "mode": args.mode, "batch": 1, "threads": args.threads,
                                 "load_avg_1min": os.getloadavg()[0]}
    figures = forward_figures if args.mode == "forward" else train_figures
    for size in args.sizes:
        result[str(size)] = figures(size, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
