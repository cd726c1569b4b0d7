"""One pretraining step (forward + backward + AdamW), dense vs sparse conv stages.

VideoConvMAE-B on 16x224x224 clips at 90% tube masking and ConvMAE-B on 224x224 images at
75% random (block-wise) masking. Per model: one model, one AdamW (the engine's: fused) and one
input/mask pair; the dense masked path (``sparse_conv=False``) and the sparse path alternate,
repetition after repetition, and the median seconds per step are compared. Also printed:

- peak memory of a step, after a warm-up step: on CUDA ``torch.cuda.max_memory_allocated``
  (weights, gradients, optimizer state and activations); on CPU the same quantity read from
  the resident set of a fresh subprocess per variant: its high-water mark (``VmHWM``, reset
  through ``/proc/self/clear_refs`` after the warm-up) minus its resident set before the
  model was built (interpreter and libraries). glibc is told to serve every allocation of
  64 KiB or more with mmap (``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave the
  resident set at once and it follows the live tensors. The whole process peak is printed
  too;
- forward multiply-adds counted by fvcore (``FlopCountAnalysis``, one multiply-add = one
  "flop" in fvcore's convention; handles added for ``scaled_dot_product_attention`` and the
  sparse depthwise op), and the achieved rate of a step, 3 x forward x 2 FLOPs / step time
  (backward ~ 2 x forward), against a measured fp32 matmul rate on the same device.

``--compile`` compares instead, for each model, the sparse training step three ways, as the
engine builds it (``common.optim.build_optimizer``: paper betas, weight-decay groups; the model
draws its own masks at the fixed ratio, as in training):

- ``eager``: today's eager step, AdamW with torch's defaults (on the CPU a per-tensor loop);
- ``fused``: the same with the fused AdamW (``SOLVER.FUSED``, the default now);
- ``compiled``: what ``TRAIN.COMPILE default`` trains with: the model compiled in place by
  ``common.engine.compilation.compile_model`` (inductor), the fused AdamW.

The three alternate step after step in one process (same initial weights and input); medians
of wall time and of process CPU time (user + sys of all threads), each relative to ``eager``.
The compiled variant's first step (compilation) is timed separately; ``--second-process``
times the first step of a fresh process too (inductor's on-disk cache). On CUDA the step runs
under bf16 autocast (the engine's ``TRAIN.PRECISION auto``). Peak memory of one more step per
variant (``peak_step_mib``) is printed too.

The last line is one JSON object. Examples (the figures in docs/performance.md)::

    python benchmarks/pretrain_step.py --batch 1 --threads 2
    python benchmarks/pretrain_step.py --compile --batch 2 --threads 2
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.compilation import compile_model  # noqa: E402
from common.engine.precision import Precision, resolve_precision  # noqa: E402
from common.models import create_model  # noqa: E402
from common.optim import build_optimizer  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

VARIANTS = ("dense", "sparse")
STEP_VARIANTS = ("eager", "fused", "compiled")
MALLOC_MMAP_THRESHOLD = -3  # glibc's mallopt parameter M_MMAP_THRESHOLD


@dataclass(frozen=True)
class Workload:
    """A model and its input: registry name, factory overrides, input shape, mask ratio."""

    key: str
    model: str
    overrides: Dict[str, object]
    input_shape: Tuple[int, ...]
    mask_ratio: float


def workloads(args: argparse.Namespace) -> List[Workload]:
    """The video and/or image workloads selected on the command line."""
    chosen = []
    if "video" in args.models:
        size = dict(num_frames=args.frames, img_size=args.video_size)
        chosen.append(Workload("video", "videoconvmae_base_patch16", size,
                               (3, args.frames, args.video_size, args.video_size), args.video_mask))
    if "image" in args.models:
        chosen.append(Workload("image", "convmae_convvit_base_patch16", dict(img_size=args.image_size),
                               (3, args.image_size, args.image_size), args.image_mask))
    return chosen


# -- building -------------------------------------------------------------------------------

def build(work: Workload, batch: int, device: torch.device, seed: int = 0):
    """The model, AdamW as training builds it (paper betas, weight-decay groups, fused), one input
    batch and one fixed mask, all seeded."""
    model, optimizer = build_training_variant(work, "fused", device, seed=seed)
    x = torch.randn(batch, *work.input_shape, device=device)
    mask = model.random_masking(batch, work.mask_ratio, device=device)
    return model, optimizer, x, mask


def forward_backward(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> None:
    loss, _, _ = model(x, mask=mask)
    loss.backward()


def update(optimizer: torch.optim.Optimizer) -> None:
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, mask: torch.Tensor) -> None:
    """Forward, backward and one AdamW step."""
    forward_backward(model, x, mask)
    update(optimizer)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# -- time -----------------------------------------------------------------------------------

def timed_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, mask: torch.Tensor,
               device: torch.device) -> Tuple[float, float]:
    """One ``train_step``: (seconds of the whole step, seconds of its AdamW update)."""
    first = timed(lambda: forward_backward(model, x, mask), device)
    second = timed(lambda: update(optimizer), device)
    return first + second, second


def step_times(work: Workload, args: argparse.Namespace,
               device: torch.device) -> Dict[str, List[Tuple[float, float]]]:
    """(step, AdamW) seconds of each variant, alternating dense / sparse after a warm-up of each."""
    model, optimizer, x, mask = build(work, args.batch, device)
    times: Dict[str, List[Tuple[float, float]]] = {v: [] for v in VARIANTS}
    for rep in range(args.warmup + args.reps):
        for variant in VARIANTS:
            model.sparse_conv = variant == "sparse"
            seconds = timed_step(model, optimizer, x, mask, device)
            if rep >= args.warmup:
                times[variant].append(seconds)
    return times


def matmul_gflops(size: int, device: torch.device, reps: int = 10) -> float:
    """Measured fp32 matmul rate (GFLOP/s, 2 n^3 per product), median of ``reps``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    seconds = statistics.median(timed(lambda: a @ b, device) for _ in range(reps))
    return 2 * size**3 / seconds / 1e9


def print_profiles(work: Workload, args: argparse.Namespace, device: torch.device) -> None:
    """torch.profiler table (self time, top ops) of one step of each variant, after a warm-up."""
    model, optimizer, x, mask = build(work, args.batch, device)
    for variant in VARIANTS:
        model.sparse_conv = variant == "sparse"
        train_step(model, optimizer, x, mask)
        print_step_profile(f"{work.key} {variant}", lambda: train_step(model, optimizer, x, mask), device,
                           args.profile)


def print_step_profile(label: str, step: Callable[[], None], device: torch.device, rows: int) -> None:
    """torch.profiler table of one call of ``step``: its ``rows`` ops of most self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    print(f"-- profile: {label}, one step")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=rows))


# -- flops ----------------------------------------------------------------------------------

def _shape(value) -> List[int]:
    return value.type().sizes()


def _sdpa_macs(inputs, outputs) -> int:
    """q @ k^T and attn @ v: 2 * N * heads * L_q * L_k * d multiply-adds."""
    q, k = _shape(inputs[0]), _shape(inputs[1])
    return 2 * math.prod(q) * k[-2]


def _layer_norm_macs(inputs, outputs) -> int:
    """fvcore's LayerNorm count (5 per element with affine) without its limit on the rank."""
    return 5 * math.prod(_shape(inputs[0]))


def _visible_depthwise_macs(inputs, outputs) -> int:
    """Depthwise conv at the visible positions: output elements x kernel taps."""
    weight = _shape(inputs[1])
    return math.prod(_shape(outputs[0])) * math.prod(weight[2:])


EXTRA_OP_HANDLES = {
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::layer_norm": _layer_norm_macs,
    "prim::PythonOp._VisibleDepthwise": _visible_depthwise_macs,
}


class _ForwardWithMask(nn.Module):
    """Traceable wrapper: (x, mask) -> (loss, pred)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        loss, pred, _ = self.model(x, mask=mask)
        return loss, pred


def forward_gmacs(work: Workload, batch: int, device: torch.device) -> Dict[str, float]:
    """fvcore forward multiply-adds (billions) of each variant."""
    from fvcore.nn import FlopCountAnalysis

    model, _, x, mask = build(work, batch, device)
    result = {}
    for variant in VARIANTS:
        model.sparse_conv = variant == "sparse"
        counter = FlopCountAnalysis(_ForwardWithMask(model), (x, mask))
        counter.set_op_handle(**EXTRA_OP_HANDLES)
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        result[variant] = counter.total() / 1e9
    return result


# -- memory ---------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current resident set (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def step_memory_here(work: Workload, variant: str, batch: int, device: torch.device) -> Dict[str, float]:
    """Peak memory (MiB) of one step of ``variant`` after a warm-up step, in this process.

    ``peak_mib``: tensors (weights, optimizer state, gradients, activations) at the peak;
    ``process_peak_mib``: everything the process holds then (CPU: VmHWM; CUDA: reserved).
    """
    runtime_kib = _status_kib("VmRSS")
    model, optimizer, x, mask = build(work, batch, device)
    model.sparse_conv = variant == "sparse"
    train_step(model, optimizer, x, mask)  # allocates the optimizer state
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step(model, optimizer, x, mask)
        return {"peak_mib": torch.cuda.max_memory_allocated(device) / 2**20,
                "process_peak_mib": torch.cuda.max_memory_reserved(device) / 2**20}
    _reset_peak_rss()
    train_step(model, optimizer, x, mask)
    peak_kib = _status_kib("VmHWM")
    return {"peak_mib": (peak_kib - runtime_kib) / 1024, "process_peak_mib": peak_kib / 1024}


def step_memory(work: Workload, variant: str, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Peak step memory of one variant; on CPU measured in a fresh subprocess."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return step_memory_here(work, variant, args.batch, device)
    probe = json.dumps({"workload": asdict(work), "variant": variant, "batch": args.batch, "threads": args.threads})
    command = [sys.executable, os.path.abspath(__file__), "--memory-probe", probe]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_memory_probe(probe: Dict[str, object]) -> None:
    """The subprocess side of ``step_memory`` (CPU): prints the figures as JSON."""
    if probe["threads"]:
        torch.set_num_threads(probe["threads"])
    spec = probe["workload"]
    work = Workload(**{**spec, "input_shape": tuple(spec["input_shape"])})
    print(json.dumps(step_memory_here(work, probe["variant"], probe["batch"], torch.device("cpu"))))


# -- fused optimizer and compiled step (--compile) ------------------------------------------------

def build_training_variant(work: Workload, variant: str, device: torch.device, *, sparse: bool = True,
                           backend: str = "inductor", seed: int = 0) -> Tuple[nn.Module, torch.optim.Optimizer]:
    """The model and optimizer of a ``STEP_VARIANTS`` (or ``dense``) step as the engine builds them;
    ``backend``: the compiled variant's ``TRAIN.COMPILE_BACKEND``."""
    torch.manual_seed(seed)
    model = create_model(work.model, mask_ratio=work.mask_ratio, sparse_conv=sparse, **work.overrides)
    model = model.to(device).train()
    optimizer = build_optimizer(model, method="adamw", lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95),
                                fused=variant != "eager")
    if variant == "compiled":
        compile_model(model, "default", backend=backend)
    return model, optimizer


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, precision: Precision) -> None:
    """The engine's step: forward + loss (the model draws its mask) in the run's precision, backward, update."""
    with precision.autocast():
        loss, _, _ = model(x)
    loss.backward()
    update(optimizer)


@dataclass
class Timing:
    """Seconds of one step: wall time and process CPU time (user + sys, all threads)."""

    wall: float
    cpu: float


def timed_training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                        precision: Precision, device: torch.device) -> Timing:
    synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    training_step(model, optimizer, x, precision)
    synchronize(device)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def peak_step_mib(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, precision: Precision,
                  device: torch.device) -> float:
    """Peak tensor memory (MiB) of one step: weights, optimizer state, gradients, activations.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU (Linux, glibc): the bytes of the model's
    tensors and optimizer state plus the growth of the resident set over the step (its
    high-water mark ``VmHWM``, reset first), glibc told to serve blocks of 64 KiB and more with
    mmap so that they leave the resident set when freed (``mallopt``, after ``malloc_trim``).
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        training_step(model, optimizer, x, precision)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    libc = ctypes.CDLL(None)
    libc.mallopt(MALLOC_MMAP_THRESHOLD, 65536)
    libc.malloc_trim(0)
    before_kib = _status_kib("VmRSS")
    _reset_peak_rss()
    training_step(model, optimizer, x, precision)
    growth = (_status_kib("VmHWM") - before_kib) * 1024
    held = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    held += sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
                if torch.is_tensor(v))
    return (held + growth) / 2**20


def interleaved_steps(work: Workload, variants: Sequence[str], args: argparse.Namespace,
                      device: torch.device) -> Dict[str, Dict[str, object]]:
    """Per variant: the first step's seconds (compilation included), then ``args.reps`` timed steps
    after ``args.warmup`` more, the variants alternating step after step; CUDA peak memory."""
    precision = resolve_precision("auto", device)
    x = torch.randn(args.batch, *work.input_shape, device=device)
    torch._dynamo.reset()  # compiled as in a training process: this model alone, static shapes
    built = {v: build_training_variant(work, v, device, sparse=v != "dense", backend=args.compile_backend)
             for v in variants}
    results: Dict[str, Dict[str, object]] = {}
    for variant, (model, optimizer) in built.items():
        first = timed_training_step(model, optimizer, x, precision, device)
        results[variant] = {"first_s": first.wall, "timings": [], "load": [_load()]}
    for rep in range(args.warmup + args.reps):
        for variant, (model, optimizer) in built.items():
            timing = timed_training_step(model, optimizer, x, precision, device)
            if rep >= args.warmup:
                results[variant]["timings"].append(timing)
    for variant, (model, optimizer) in built.items():
        results[variant]["peak_mib"] = peak_step_mib(model, optimizer, x, precision, device)
        results[variant]["load"].append(_load())
    return results


def first_compiled_step_in_new_process(work: Workload, args: argparse.Namespace) -> float:
    """Seconds of the compiled variant's first step in a fresh process (inductor's on-disk cache
    of this process's compilation serves it where torch allows)."""
    probe = json.dumps({"workload": asdict(work), "batch": args.batch, "threads": args.threads,
                        "device": args.device, "backend": args.compile_backend})
    command = [sys.executable, os.path.abspath(__file__), "--compile-probe", probe]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])["first_s"]


def run_compile_probe(probe: Dict[str, object]) -> None:
    """The subprocess side of ``first_compiled_step_in_new_process``: prints its figure as JSON."""
    if probe["threads"]:
        torch.set_num_threads(probe["threads"])
    spec = probe["workload"]
    work = Workload(**{**spec, "input_shape": tuple(spec["input_shape"])})
    device = torch.device(probe["device"])
    model, optimizer = build_training_variant(work, "compiled", device, backend=probe["backend"])
    x = torch.randn(probe["batch"], *work.input_shape, device=device)
    first = timed_training_step(model, optimizer, x, resolve_precision("auto", device), device)
    print(json.dumps({"first_s": first.wall}))


def run_compile_comparison(work: Workload, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """``--compile``: eager / fused / compiled sparse steps of one workload; prints a block, returns figures."""
    results = interleaved_steps(work, STEP_VARIANTS, args, device)
    median = {v: {k: statistics.median(getattr(t, k) for t in r["timings"]) for k in ("wall", "cpu")}
              for v, r in results.items()}
    precision = resolve_precision("auto", device).dtype or "fp32"
    print(f"== {work.key}: {work.model}, sparse, input (N={args.batch}, {', '.join(map(str, work.input_shape))}), "
          f"mask ratio {work.mask_ratio}, {precision}")
    figures: Dict[str, float] = {}
    for v in STEP_VARIANTS:
        timings = results[v]["timings"]
        wall_ratio = median[v]["wall"] / median["eager"]["wall"]
        cpu_ratio = median[v]["cpu"] / median["eager"]["cpu"]
        print(f"  {v:8s} step {median[v]['wall']:.3f} s (median of {len(timings)}: "
              f"{', '.join(f'{t.wall:.3f}' for t in timings)}), {wall_ratio:.3f} x eager; CPU time "
              f"{median[v]['cpu']:.3f} s, {cpu_ratio:.3f} x eager; first step {results[v]['first_s']:.1f} s; "
              f"load {' -> '.join(results[v]['load'])}"
              + f"; peak memory {results[v]['peak_mib']:.0f} MiB")
        figures[f"{work.key}_{v}_step_s"] = median[v]["wall"]
        figures[f"{work.key}_{v}_cpu_s"] = median[v]["cpu"]
        figures[f"{work.key}_{v}_first_step_s"] = results[v]["first_s"]
        figures[f"{work.key}_{v}_peak_mib"] = results[v]["peak_mib"]
        if v != "eager":
            figures[f"{work.key}_{v}_over_eager_step"] = wall_ratio
            figures[f"{work.key}_{v}_over_eager_cpu"] = cpu_ratio
    figures[f"{work.key}_compile_s"] = results["compiled"]["first_s"] - median["compiled"]["wall"]
    print(f"  compilation (first compiled step - median step): {figures[f'{work.key}_compile_s']:.1f} s")
    if args.second_process:
        second = first_compiled_step_in_new_process(work, args)
        figures[f"{work.key}_compile_s_second_process"] = second - median["compiled"]["wall"]
        print(f"  compilation in a second process: {figures[f'{work.key}_compile_s_second_process']:.1f} s")
    if args.profile:
        print_step_profiles(work, args, device)
    return figures


def print_step_profiles(work: Workload, args: argparse.Namespace, device: torch.device) -> None:
    """torch.profiler table of one step of each ``STEP_VARIANTS`` (after two untimed ones)."""
    precision = resolve_precision("auto", device)
    x = torch.randn(args.batch, *work.input_shape, device=device)
    for variant in STEP_VARIANTS:
        model, optimizer = build_training_variant(work, variant, device, backend=args.compile_backend)
        for _ in range(2):
            training_step(model, optimizer, x, precision)
        print_step_profile(f"{work.key} {variant}", lambda: training_step(model, optimizer, x, precision), device,
                           args.profile)


# -- report ---------------------------------------------------------------------------------

def run_workload(work: Workload, args: argparse.Namespace, device: torch.device, peak_gflops: float) -> Dict[str, float]:
    """Time, memory and FLOPs of one workload; prints a block and returns the figures."""
    times = step_times(work, args, device)
    median = {v: statistics.median(t for t, _ in times[v]) for v in VARIANTS}
    adamw = {v: statistics.median(o for _, o in times[v]) for v in VARIANTS}
    memory = {v: step_memory(work, v, args, device) for v in VARIANTS}
    gmacs = forward_gmacs(work, args.batch, device) if args.flops else {v: float("nan") for v in VARIANTS}
    print(f"== {work.key}: {work.model}, input (N={args.batch}, {', '.join(map(str, work.input_shape))}), "
          f"mask ratio {work.mask_ratio}")
    figures: Dict[str, float] = {}
    for v in VARIANTS:
        achieved = 3 * 2 * gmacs[v] / median[v]
        print(f"  {v:6s} step {median[v]:.3f} s (median of {len(times[v])}: "
              f"{', '.join(f'{t:.3f}' for t, _ in times[v])}; AdamW {adamw[v]:.3f} s of it); peak memory {memory[v]['peak_mib']:.0f} MiB "
              f"(process {memory[v]['process_peak_mib']:.0f} MiB); forward {gmacs[v]:.1f} GMACs; "
              f"{achieved:.0f} GFLOP/s = {achieved / peak_gflops:.0%} of matmul")
        figures[f"{work.key}_{v}_step_s"] = median[v]
        figures[f"{work.key}_{v}_adamw_s"] = adamw[v]
        figures[f"{work.key}_{v}_peak_mib"] = memory[v]["peak_mib"]
        figures[f"{work.key}_{v}_process_peak_mib"] = memory[v]["process_peak_mib"]
        figures[f"{work.key}_{v}_forward_gmacs"] = gmacs[v]
        figures[f"{work.key}_{v}_fraction_of_matmul_peak"] = achieved / peak_gflops
    figures[f"{work.key}_step_ratio"] = median["sparse"] / median["dense"]
    figures[f"{work.key}_mem_ratio"] = memory["sparse"]["peak_mib"] / memory["dense"]["peak_mib"]
    figures[f"{work.key}_process_mem_ratio"] = (
        memory["sparse"]["process_peak_mib"] / memory["dense"]["process_peak_mib"]
    )
    figures[f"{work.key}_flop_ratio"] = gmacs["sparse"] / gmacs["dense"]
    print(f"  sparse / dense: step {figures[f'{work.key}_step_ratio']:.3f}, peak memory "
          f"{figures[f'{work.key}_mem_ratio']:.3f} (process {figures[f'{work.key}_process_mem_ratio']:.3f}), "
          f"forward MACs {figures[f'{work.key}_flop_ratio']:.3f}")
    if args.profile:
        print_profiles(work, args, device)
    return figures


def _load() -> str:
    """The 1-minute load average: other processes on the machine distort CPU timings."""
    return f"{os.getloadavg()[0]:.2f}"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=("video", "image"), default=["video", "image"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--video-size", type=int, default=224)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--video-mask", type=float, default=0.9)
    parser.add_argument("--image-mask", type=float, default=0.75)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="also print a torch.profiler table of ROWS ops per variant")
    parser.add_argument("--no-flops", dest="flops", action="store_false", help="skip the fvcore count")
    parser.add_argument("--compile", action="store_true",
                        help="compare the sparse step eager / fused AdamW / TRAIN.COMPILE default instead")
    parser.add_argument("--compile-backend", default="inductor", help="with --compile: the torch.compile backend")
    parser.add_argument("--second-process", action="store_true",
                        help="with --compile: also time the compilation in a fresh process (on-disk cache)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal, JSON
    parser.add_argument("--compile-probe", default=None, help=argparse.SUPPRESS)  # internal, JSON
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    configure_process()
    args = parse_args(argv)
    if args.memory_probe:
        run_memory_probe(json.loads(args.memory_probe))
        return
    if args.compile_probe:
        run_compile_probe(json.loads(args.compile_probe))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_gflops(args.matmul_size, device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"fp32 matmul {args.matmul_size}^3: {peak:.0f} GFLOP/s; load average {_load()}")
    figures: Dict[str, float] = {"matmul_gflops": peak, "batch": args.batch, "threads": torch.get_num_threads(),
                                 "load_start": os.getloadavg()[0]}
    for work in workloads(args):
        figures.update(run_compile_comparison(work, args, device) if args.compile else
                       run_workload(work, args, device, peak))
    print(f"load average at the end {_load()}")
    figures["load_end"] = os.getloadavg()[0]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
