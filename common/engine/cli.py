"""Command line of the tools: ``python tools/JOB.py --cfg CONFIG.yaml [KEY VALUE ...]``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from fvcore.common.config import CfgNode

from common.config import load_config
from common.files import build_folder_atomically
from common.engine.config_checks import validate_config, world_size_from_env
from common.engine.distributed import shutdown_distributed
from common.engine.jobs import run_job

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo" / "video_pretrain.yaml"
DEMO_CLIPS_PER_CLASS = (24, 4, 4)  # train / val / test clips per class: 12 demo steps per epoch
DEMO_IMAGES_PER_CLASS = (24, 4)  # train / val
DEMO_IMAGE_SIZE = (112, 128)
EXAMPLE_RECIPE = {"test": "finetune"}  # a test runs the finetuning recipe's model and views
EXAMPLE_OPTS = {"test": "TEST.CHECKPOINT_FILE_PATH out/x/checkpoint-last.pth"}
JOB_HELP = {
    "pretrain": "Masked-autoencoder pretraining (ConvMAE / VideoConvMAE).",
    "finetune": "End-to-end finetuning of a classifier from pretrained weights.",
    "linprobe": "Linear probe: BatchNorm (no affine) + Linear head on the frozen encoder.",
    "test": "Multi-view test of a classifier checkpoint (predictions.csv, test_results.json).",
}


def build_parser(job: str) -> argparse.ArgumentParser:
    """The parser of ``tools/<job>.py``."""
    parser = argparse.ArgumentParser(
        description=JOB_HELP[job],
        epilog="Example: python tools/%s.py --cfg configs/demo/video_%s.yaml OUTPUT_DIR out/x %s. Under torchrun "
               "the same command runs data-parallel." % (job, EXAMPLE_RECIPE.get(job, job), EXAMPLE_OPTS.get(job, "SOLVER.MAX_EPOCH 2")),
    )
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config (may use _BASE_)")
    parser.add_argument("--make-synthetic-data", action="store_true",
                        help="generate the synthetic dataset at DATA.PATH_TO_DATA_DIR if it is missing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides, e.g. SOLVER.BASE_LR 1e-3 TRAIN.BATCH_SIZE 32")
    return parser


def config_from_args(job: str, argv: Sequence[str]) -> CfgNode:
    """Parse ``argv``; no arguments to ``pretrain`` means the demo (synthetic data made if missing).
    ``run_job`` checks the config before any work; data generation checks it first too."""
    argv = list(argv)
    demo = job == "pretrain" and not argv
    args = build_parser(job).parse_args(["--cfg", str(DEMO_CONFIG), "--make-synthetic-data"] if demo else argv)
    cfg = load_config(args.cfg_file, args.opts)
    if args.make_synthetic_data:
        validate_config(cfg, job=job, world_size=world_size_from_env())  # before generating data
        ensure_synthetic_dataset(cfg)
    return cfg


def ensure_synthetic_dataset(cfg: CfgNode) -> None:
    """Write the synthetic dataset the config points at, unless its folder exists. It is built in
    a temp folder and renamed into place when complete (``build_folder_atomically``), so a run
    killed while generating never leaves a half dataset for the next run to train on."""
    folder = Path(cfg.DATA.PATH_TO_DATA_DIR)
    if folder.exists() or int(os.environ.get("RANK", "0")) != 0:
        return
    build_folder_atomically(folder, lambda target: _make_synthetic_dataset(cfg, target))


def _make_synthetic_dataset(cfg: CfgNode, folder: Path) -> None:
    if cfg.DATA.DATASET.lower() == "imagenet":
        from imageconvmae.data.synthetic import make_synthetic_image_folder
        make_synthetic_image_folder(str(folder), images_per_class=DEMO_IMAGES_PER_CLASS,
                                    height=DEMO_IMAGE_SIZE[0], width=DEMO_IMAGE_SIZE[1])
    else:
        from videoconvmae.data import synthetic
        synthetic.make_synthetic_video_dataset(str(folder.parent), clips_per_class=DEMO_CLIPS_PER_CLASS,
                                               formats=(folder.name,))


def main(job: str, argv: Optional[List[str]] = None) -> dict:
    """Entry point of ``tools/<job>.py``."""
    cfg = config_from_args(job, sys.argv[1:] if argv is None else argv)
    try:
        return run_job(job, cfg)
    finally:
        shutdown_distributed()
