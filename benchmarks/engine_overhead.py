"""Engine overheads, measured on this machine (issue 4's targets).

1. Data wait: the demo video pretraining (configs/demo/video_pretrain.yaml, 2 data workers) for
   a few epochs; the fraction of step time spent waiting for data, from log.jsonl, over the
   epochs after the first.
2. Multi-view test: views/s of ``predict_videos`` + ``gather_results`` + ``summarize`` against a
   plain forward pass over the same (pre-loaded) views with the demo classifier.

Prints the figures and, last, one JSON line. Usage (from the repository root):
    python benchmarks/engine_overhead.py [--epochs 4] [--repeats 5] [--data-dir output/demo/data/kinetics]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.config import load_config  # noqa: E402
from common.data import batch_inputs, build_dataset  # noqa: E402
from common.engine.builders import build_eval_loader, build_model  # noqa: E402
from common.engine.demo import ensure_synthetic_dataset  # noqa: E402
from common.engine.distributed import init_distributed  # noqa: E402
from common.engine.evaluation import gather_results, predict_videos, summarize  # noqa: E402
from common.engine.jobs import run_job  # noqa: E402
from common.engine.precision import resolve_precision  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

DEMO = REPO / "configs" / "demo"


def data_wait(data_dir: str, epochs: int, output_dir: str) -> dict:
    """Run the demo pretraining; data-wait fraction averaged over epochs 2..N."""
    cfg = load_config(str(DEMO / "video_pretrain.yaml"),
                      ["DATA.PATH_TO_DATA_DIR", data_dir, "OUTPUT_DIR", output_dir, "SOLVER.MAX_EPOCH", str(epochs),
                       "LOG.TENSORBOARD", "False", "TRAIN.CHECKPOINT_PERIOD", str(epochs)])
    ensure_synthetic_dataset(cfg)
    run_job("pretrain", cfg)
    records = [json.loads(line) for line in (Path(output_dir) / "log.jsonl").read_text().splitlines()]
    later = records[1:] or records
    return {
        "data_workers": cfg.DATA_LOADER.NUM_WORKERS,
        "data_wait_fraction_per_epoch": [round(r["data_wait_fraction"], 4) for r in records],
        "data_wait_fraction_after_first_epoch": statistics.mean(r["data_wait_fraction"] for r in later),
        "step_time_s": statistics.mean(r["data_time"] + r["compute_time"] for r in later),
        "samples_per_s": statistics.mean(r["samples_per_s"] for r in later),
    }


def multiview_overhead(data_dir: str, repeats: int) -> dict:
    """Views/s of the multi-view test path vs a plain forward over the same pre-loaded views."""
    cfg = load_config(str(DEMO / "video_finetune.yaml"), ["DATA.PATH_TO_DATA_DIR", data_dir])
    dist = init_distributed()
    model = build_model(cfg, pretraining=False, crop_size=cfg.DATA.TEST_CROP_SIZE).eval()
    batches = list(build_eval_loader(cfg, build_dataset(cfg, "test"), dist))
    views = sum(batch_inputs(b).shape[0] * batch_inputs(b).shape[1] for b in batches)
    precision = resolve_precision("fp32", dist.device)

    @torch.no_grad()
    def plain() -> None:
        for batch in batches:
            model(batch_inputs(batch).flatten(0, 1))

    def engine() -> None:
        local = predict_videos(model, batches, inputs_of=batch_inputs, device=dist.device, input_ndim=5,
                               precision=precision)
        summarize(gather_results(local))

    timings = {"plain": [], "engine": []}
    plain()  # warm-up
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("engine", engine)):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    plain_vps = views / statistics.median(timings["plain"])
    engine_vps = views / statistics.median(timings["engine"])
    return {
        "videos": sum(len(b["label"]) for b in batches),
        "views": views,
        "plain_forward_views_per_s": plain_vps,
        "multiview_test_views_per_s": engine_vps,
        "multiview_over_plain": engine_vps / plain_vps,
    }


def main() -> None:
    configure_process()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default="output/demo/data/kinetics")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        wait = data_wait(args.data_dir, args.epochs, os.path.join(out, "pretrain"))
    print(f"data wait, demo pretraining, {wait['data_workers']} workers: per epoch "
          f"{wait['data_wait_fraction_per_epoch']}; after epoch 1: {100 * wait['data_wait_fraction_after_first_epoch']:.1f}% "
          f"of {wait['step_time_s']:.3f} s/step ({wait['samples_per_s']:.1f} clips/s)")
    multi = multiview_overhead(args.data_dir, args.repeats)
    print(f"multi-view test: {multi['videos']} videos, {multi['views']} views; plain forward "
          f"{multi['plain_forward_views_per_s']:.1f} views/s, test path {multi['multiview_test_views_per_s']:.1f} views/s "
          f"({100 * multi['multiview_over_plain']:.1f}% of plain)")
    print(json.dumps({"threads": torch.get_num_threads(), **wait, **multi}))


if __name__ == "__main__":
    main()
