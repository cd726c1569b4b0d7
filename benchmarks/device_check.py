"""One command that checks the training path on whatever device is there, and prints its figures.

    python benchmarks/device_check.py                      # on a GPU box: every GPU, bf16
    python benchmarks/device_check.py --tiny               # CPU, tiny sizes (the test suite runs it)

Three parts, on ``--device`` (default: CUDA when available, else the CPU), in the run's precision
(the engine's ``TRAIN.PRECISION auto``: bf16 on a GPU that has it, fp32 on the CPU):

1. **Steps.** The pretraining step of VideoConvMAE-B (16x224x224, 90% tube masking) and ConvMAE-B
   (224x224, 75%) three ways, alternating in one process: ``dense`` (the masked dense path),
   ``sparse`` (visible blocks only, the default) and ``compiled`` (``TRAIN.COMPILE default``),
   all with the fused AdamW, as ``benchmarks/pretrain_step.py`` builds them; median step time and
   peak memory of each (``pretrain_step.peak_step_mib``).
2. **Data.** The pretraining loader of the demo's synthetic videos as the engine builds it,
   batches moved to the device and normalised there (``batch_inputs``): clips/s of the loader
   alone; and the clips/s and data-wait share of the chain's pretraining (its ``log.jsonl``).
3. **Chain.** The demo's pretrain -> finetune -> multi-view test through the real tools under
   ``torchrun`` with every local device (``--nproc``: all GPUs; 2 CPU processes with gloo on
   the CPU), NCCL on GPUs. Checked: every test video is in ``predictions.csv`` exactly once with
   all its views, ``test_results.json`` counts each once, and the checkpoints written on the
   device load on the CPU (``common.engine.inference.load_run``) and give finite outputs there.

``--tiny`` shrinks every size (small models, 4x32x32 clips, a few generated videos, one epoch),
so the CPU test of the suite runs the same code as the GPU check. The last line is one JSON
object: the figures, ``checks`` (name -> true/false) and ``ok``; the exit status is 1 when a
check fails. docs/performance.md says what to compare.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCHMARKS))

from common.config import load_config  # noqa: E402
from common.data import batch_inputs, build_dataset  # noqa: E402
from common.data.lists import read_list  # noqa: E402
from common.engine.builders import build_train_loader  # noqa: E402
from common.engine.demo import FINETUNE_CONFIG, PRETRAIN_CONFIG, ensure_synthetic_dataset  # noqa: E402
from common.engine.distributed import DistInfo  # noqa: E402
from common.engine.inference import load_run  # noqa: E402
from common.engine.precision import resolve_precision  # noqa: E402
from common.files import build_folder_atomically, read_json_lines  # noqa: E402
from common.process_settings import configure_process  # noqa: E402
from pretrain_step import Workload, interleaved_steps, synchronize  # noqa: E402
from videoconvmae.data.synthetic import write_motion_dataset  # noqa: E402

STEP_VARIANTS = ("dense", "sparse", "compiled")
TINY_ARCH = dict(embed_dim=[16, 24, 32], depth=[1, 1, 2], num_heads=2, mlp_ratio=[2.0, 2.0, 2.0],
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
TINY_CHAIN = ["MODEL.EMBED_DIM", "[16, 24, 32]", "MODEL.DEPTH", "[1, 1, 2]", "MODEL.MLP_RATIO", "[2.0, 2.0, 2.0]",
              "MODEL.NUM_HEADS", "2", "MODEL.DECODER_EMBED_DIM", "32", "MODEL.DECODER_DEPTH", "1",
              "MODEL.DECODER_NUM_HEADS", "2", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32",
              "DATA.TEST_CROP_SIZE", "32"]
# 12 training, 3 validation and 9 test videos: an odd number of test videos for the 2 CPU processes
TINY_DATA = dict(num_classes=3, clips_per_class=(4, 1, 3), num_frames=24, height=40, width=56, fps=30, seed=0,
                 background="smooth", square="plain", square_size=0.4)
TOOL_TIMEOUT_S = 3600


def step_workloads(tiny: bool) -> List[Workload]:
    """VideoConvMAE-B and ConvMAE-B at the paper's sizes, or tiny ones."""
    if tiny:
        return [Workload("video", "videoconvmae_small_patch16", dict(num_frames=4, img_size=32, **TINY_ARCH),
                         (3, 4, 32, 32), 0.75),
                Workload("image", "convmae_convvit_small_patch16", dict(img_size=64, **TINY_ARCH), (3, 64, 64), 0.75)]
    return [Workload("video", "videoconvmae_base_patch16", dict(num_frames=16, img_size=224), (3, 16, 224, 224), 0.9),
            Workload("image", "convmae_convvit_base_patch16", dict(img_size=224), (3, 224, 224), 0.75)]


# -- 1. steps ---------------------------------------------------------------------------------------

def check_steps(args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Median step seconds and peak memory of dense / sparse / compiled, per workload."""
    figures: Dict[str, float] = {}
    for work in step_workloads(args.tiny):
        results = interleaved_steps(work, STEP_VARIANTS, args, device)
        median = {v: statistics.median(t.wall for t in results[v]["timings"]) for v in STEP_VARIANTS}
        for v in STEP_VARIANTS:
            figures[f"{work.key}_{v}_step_s"] = median[v]
            figures[f"{work.key}_{v}_peak_mib"] = results[v]["peak_mib"]
            print(f"step {work.key} {v:8s}: {median[v]:.3f} s (median of {len(results[v]['timings'])}), "
                  f"peak memory {results[v]['peak_mib']:.0f} MiB, first step {results[v]['first_s']:.1f} s, "
                  f"load {' -> '.join(results[v]['load'])}", flush=True)
        figures[f"{work.key}_sparse_over_dense_step"] = median["sparse"] / median["dense"]
        figures[f"{work.key}_compiled_over_sparse_step"] = median["compiled"] / median["sparse"]
        figures[f"{work.key}_compile_s"] = results["compiled"]["first_s"] - median["compiled"]
    return figures


# -- 2. data ----------------------------------------------------------------------------------------

def make_data(output_dir: Path, tiny: bool) -> Path:
    """The demo's synthetic motion videos (kinetics layout) in ``output_dir/data``, or a few tiny ones
    in ``output_dir/data-tiny`` (one folder per size: a ``--tiny`` run never tests on the full set or
    the other way), built whole or not at all (a killed run leaves no half dataset)."""
    if not tiny:
        folder = output_dir / "data"
        return ensure_synthetic_dataset(load_config(str(PRETRAIN_CONFIG), ["DATA.PATH_TO_DATA_DIR", str(folder)]))
    folder = output_dir / "data-tiny"
    build_folder_atomically(folder, lambda target: write_motion_dataset(target, "kinetics", progress=False, **TINY_DATA))
    return folder


def check_loader(cfg, device: torch.device, batches: int) -> Dict[str, float]:
    """Clips/s of the engine's pretraining loader alone, batches moved to ``device`` and normalised."""
    loader = build_train_loader(cfg, build_dataset(cfg, "pretrain"), DistInfo(rank=0, world_size=1, local_rank=0, device=device))
    clips, start = 0, time.perf_counter()
    for _ in range(math.ceil(batches / max(len(loader), 1))):
        for batch in loader:
            clips += len(batch_inputs(batch, device))
    synchronize(device)
    seconds = time.perf_counter() - start
    print(f"loader: {clips} clips in {seconds:.1f} s = {clips / seconds:.1f} clips/s onto {device} "
          f"({cfg.DATA_LOADER.NUM_WORKERS} worker(s), batch {cfg.TRAIN.BATCH_SIZE})", flush=True)
    return {"loader_clips_per_s": clips / seconds}


# -- 3. chain ---------------------------------------------------------------------------------------

def chain_overrides(args: argparse.Namespace, data: Path, nproc: int) -> List[str]:
    """Overrides of every stage: the data, the run's precision, a batch per rank and step, the
    loader's workers (pinned memory on a GPU)."""
    per_rank = 2 if args.tiny else 4
    common = ["DATA.PATH_TO_DATA_DIR", str(data), "TRAIN.PRECISION", "auto", "TRAIN.BATCH_SIZE", str(per_rank * nproc),
              "TEST.BATCH_SIZE", str(per_rank * nproc), "SOLVER.MAX_EPOCH", str(args.epochs),
              "DATA_LOADER.NUM_WORKERS", str(args.workers), "DATA_LOADER.PIN_MEMORY", str(args.device != "cpu"),
              "OVERWRITE", "True"]  # a rerun starts the check's own runs over
    if args.tiny:
        common += TINY_CHAIN + ["MODEL.NUM_CLASSES", str(TINY_DATA["num_classes"]), "SOLVER.WARMUP_EPOCHS", "0.0"]
    return common


def run_tool(tool: str, cfg_file: Path, overrides: Sequence[str], nproc: int, log: Path, device: str) -> None:
    """``torchrun --standalone --nproc_per_node nproc tools/<tool>.py --cfg cfg_file overrides``
    (the tools take every visible GPU; none for ``device`` cpu)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(REPO / "tools" / f"{tool}.py"), "--cfg", str(cfg_file), *overrides]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=TOOL_TIMEOUT_S).returncode
    print(f"chain: tools/{tool}.py on {nproc} process(es): exit {code} in {time.perf_counter() - start:.0f} s "
          f"(log {log})", flush=True)
    if code != 0:
        raise RuntimeError(f"tools/{tool}.py exited with {code}; see {log}:\n" + log.read_text()[-3000:])


def listed_test_videos(data: Path) -> List[str]:
    """The test videos of a kinetics-layout folder, from its ``test.csv``, read as the datasets read it."""
    return sorted(str(Path(entry.path).resolve()) for entry in read_list(data / "test.csv", require_labels=True))


def prediction_checks(rows: List[Dict[str, str]], results: Dict[str, Any], expected: List[str],
                      views: int) -> Dict[str, bool]:
    """``predictions.csv`` ``rows`` hold each of the ``expected`` videos (resolved paths) exactly
    once, readable ones with all ``views`` views; ``test_results.json`` counts each video once."""
    return {
        "each_test_video_once": sorted(str(Path(r["path"]).resolve()) for r in rows) == sorted(expected),
        "every_view_of_each_video": all(int(r["num_views"]) == views for r in rows if not r["error"]),
        "results_count_each_video_once": results["num_videos"] == len(expected),
    }


def finite_cpu_output(run_dir: Path) -> bool:
    """The run's checkpoint loads on the CPU (strictly, with its config) and gives finite outputs."""
    loaded = load_run(run_dir, device="cpu")
    model = loaded.model
    x = torch.rand(2, 3, *model.input_size)
    with torch.no_grad():
        out = model(x)
    values = out[0] if isinstance(out, tuple) else out  # pretraining: (loss, pred, mask)
    return bool(torch.isfinite(values).all()) and next(model.parameters()).device.type == "cpu"


def check_chain(args: argparse.Namespace, data: Path, out: Path, nproc: int) -> Dict[str, Any]:
    """Pretrain -> finetune -> multi-view test through the tools; figures and checks."""
    overrides = chain_overrides(args, data, nproc)
    pretrain, finetune, test = out / "pretrain", out / "finetune", out / "test"
    out.mkdir(parents=True, exist_ok=True)
    stages = [("pretrain", PRETRAIN_CONFIG, []),
              ("finetune", FINETUNE_CONFIG, ["TRAIN.CHECKPOINT_FILE_PATH", str(pretrain / "checkpoint-last.pth")]),
              ("test", FINETUNE_CONFIG, ["TEST.CHECKPOINT_FILE_PATH", str(finetune / "checkpoint-last.pth")])]
    for tool, recipe, extra in stages:
        run_tool(tool, recipe, ["OUTPUT_DIR", str(out / tool), *extra, *overrides], nproc, out / f"{tool}.log",
                 args.device)
    views = load_config(str(FINETUNE_CONFIG), overrides)
    views = views.TEST.NUM_ENSEMBLE_VIEWS * views.TEST.NUM_SPATIAL_CROPS
    rows = list(csv.DictReader((test / "predictions.csv").open()))
    results = json.loads((test / "test_results.json").read_text())
    expected = listed_test_videos(data)
    record = read_json_lines(pretrain / "log.jsonl")[-1]
    checks = {
        **prediction_checks(rows, results, expected, views),
        "pretrain_checkpoint_loads_on_cpu": finite_cpu_output(pretrain),
        "finetune_checkpoint_loads_on_cpu": finite_cpu_output(finetune),
        "pretrain_loss_finite": math.isfinite(record["train_loss"]),
    }
    print(f"chain: {len(rows)} predictions for {len(expected)} test videos x {views} views, top-1 "
          f"{results['top1']:.1f} %; pretraining {record['samples_per_s']:.1f} clips/s, "
          f"{100 * record['data_wait_fraction']:.1f} % waiting for data", flush=True)
    figures = {"chain_processes": nproc, "chain_test_videos": len(expected), "chain_top1": results["top1"],
               "pretrain_clips_per_s": record["samples_per_s"], "pretrain_data_wait_share": record["data_wait_fraction"]}
    return {"figures": figures, "checks": checks}


# -- main -------------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the CPU test of the suite")
    parser.add_argument("--output-dir", type=Path, default=Path("output/device_check"))
    parser.add_argument("--nproc", type=int, default=None,
                        help="processes of the chain (default: every GPU; 2 on the CPU)")
    parser.add_argument("--batch", type=int, default=None, help="step batch (default: 2 on the CPU, 32 on a GPU)")
    parser.add_argument("--reps", type=int, default=None, help="timed steps per variant (default: 3 tiny, 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant after the first")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of each training stage (default: 1 tiny, 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data loader workers per process (default: 1 on the CPU, 4 on a GPU)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the compiled step (the suite's CPU test: aot_eager)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("steps", "loader", "chain"))
    args = parser.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    args.batch = args.batch or (32 if on_gpu else 2)
    args.reps = args.reps or (3 if args.tiny else 5)
    args.epochs = args.epochs or (1 if args.tiny else 2)
    args.nproc = args.nproc or (torch.cuda.device_count() if on_gpu else 2)
    args.workers = args.workers if args.workers is not None else (4 if on_gpu else 1)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    configure_process()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = resolve_precision("auto", device).dtype or "fp32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), precision {precision}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, load average {os.getloadavg()[0]:.2f}", flush=True)
    report: Dict[str, Any] = {"device": name, "precision": str(precision), "tiny": args.tiny,
                              "load_start": os.getloadavg()[0]}
    checks: Dict[str, bool] = {}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if "steps" not in args.skip:
        report.update(check_steps(args, device))
    data = make_data(args.output_dir, args.tiny)
    if "loader" not in args.skip:
        cfg = load_config(str(PRETRAIN_CONFIG), chain_overrides(args, data, 1))
        report.update(check_loader(cfg, device, batches=8 if args.tiny else 50))
    if "chain" not in args.skip:
        chain = check_chain(args, data, args.output_dir / "chain", args.nproc)
        report.update(chain["figures"])
        checks.update(chain["checks"])
    report.update(checks=checks, ok=all(checks.values()), load_end=os.getloadavg()[0])
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
