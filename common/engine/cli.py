"""Command line of the tools: ``python tools/JOB.py --cfg CONFIG.yaml [KEY VALUE ...]``."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

from fvcore.common.config import CfgNode

from common.engine.config_checks import validate_config, world_size_from_env
from common.engine.demo import PRETRAIN_CONFIG, ensure_synthetic_dataset
from common.engine.distributed import shutdown_distributed
from common.engine.jobs import run_job
from common.engine.preemption import INTERRUPTED_EXIT_CODE
from common.engine.run_config import job_config
from common.errors import RunStopped, UserError
from common.process_settings import configure_process

# `python tools/pretrain.py` with no arguments: the demo's pretraining stage (tools/demo.py, stage 1).
DEMO_CONFIG = PRETRAIN_CONFIG
USER_ERROR_EXIT_CODE = 2  # as argparse exits on a bad command line
RUN_STOPPED_EXIT_CODE = 1  # a run that stopped for a reason it explains (it diverged)
EXAMPLE_OPTS = {"test": "TEST.CHECKPOINT_FILE_PATH out/x/checkpoint-last.pth"}
JOB_HELP = {
    "pretrain": "Masked-autoencoder pretraining (ConvMAE / VideoConvMAE). With no arguments: the demo's "
                "pretraining stage on the synthetic motion dataset (generated if missing).",
    "finetune": "End-to-end finetuning of a classifier from pretrained weights.",
    "linprobe": "Linear probe: BatchNorm (no affine) + Linear head on the frozen encoder.",
    "test": "Multi-view test of a classifier checkpoint (predictions.csv, test_results.json). On a training run "
            "folder (OUTPUT_DIR RUN) the run's config.yaml gives the model, classes and data; --cfg is optional.",
}
EXAMPLE_CONFIG = {"pretrain": "video_pretrain", "finetune": "video_finetune", "linprobe": "video_linprobe",
                  "test": "video_finetune"}


def build_parser(job: str) -> argparse.ArgumentParser:
    """The parser of ``tools/<job>.py``."""
    parser = argparse.ArgumentParser(
        description=JOB_HELP[job],
        epilog=f"Example: python tools/{job}.py --cfg configs/demo/{EXAMPLE_CONFIG[job]}.yaml OUTPUT_DIR out/x "
               f"{EXAMPLE_OPTS.get(job, 'SOLVER.MAX_EPOCH 2')}. Under torchrun the same command runs data-parallel.",
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
    cfg = job_config(job, args.cfg_file, args.opts)  # a test of a run folder starts from its config.yaml
    if args.make_synthetic_data:
        validate_config(cfg, job=job, world_size=world_size_from_env())  # before generating data
        ensure_synthetic_dataset(cfg)
    return cfg


def main(job: str, argv: Optional[List[str]] = None) -> dict:
    """Entry point of ``tools/<job>.py``: a ``UserError`` (config, data, OUTPUT_DIR) is printed as
    one message and exits with status 2, a ``RunStopped`` (divergence) with status 1, a Ctrl-C that
    stops at once (the second one during training) with 130, none with a traceback."""
    configure_process()
    try:
        cfg = config_from_args(job, sys.argv[1:] if argv is None else argv)
        return run_job(job, cfg)
    except UserError as err:
        exit_with_user_error(err)
    except RunStopped as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(RUN_STOPPED_EXIT_CODE)
    except KeyboardInterrupt:
        print("interrupted: stopped at once (Ctrl-C)", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)
    finally:
        shutdown_distributed()


def exit_with_user_error(err: UserError) -> None:
    """Print ``err`` without a traceback (it names what to fix) and exit with status 2."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)
