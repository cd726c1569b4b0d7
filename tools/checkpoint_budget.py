"""The checkpoints a training config will keep, before running it: the preflight line a run logs.

    python tools/checkpoint_budget.py --job pretrain --cfg configs/video/k400_pretrain_msd.yaml
    python tools/checkpoint_budget.py --job pretrain --cfg configs/video/k400_pretrain_msd.yaml \
        TRAIN.CHECKPOINT_PERIOD 1 TRAIN.KEEP_CHECKPOINTS 0 TRAIN.WEIGHTS_PERIOD 0

Sizes come from the config's model built on the meta device (no memory, no time): one full
training state (weights and optimizer state), one weights-only copy, and the total the run holds
at its end (``checkpoint-last.pth``, the kept ``checkpoint-EPOCH.pth`` and the ``weights-EPOCH.pth``
copies), against the free space where ``OUTPUT_DIR`` is (or would be). A config that cannot run
(a wrong key or value) is one ``error:`` line, exit 2, as with the training tools.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import load_config  # noqa: E402
from common.engine.checkpoint_budget import budget_report  # noqa: E402
from common.engine.cli import exit_with_user_error  # noqa: E402
from common.engine.config_checks import CHECKS, check_files, validate_config  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

JOBS = ("pretrain", "finetune", "linprobe")
# A plan needs no run files yet: the start checkpoint and OUTPUT_DIR may come later.
PLANNING_CHECKS = tuple(check for check in CHECKS if check is not check_files)


def main(argv: Optional[List[str]] = None) -> str:
    configure_process()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="YAML config of the run")
    parser.add_argument("--job", choices=JOBS, required=True, help="the training job the config is for")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.cfg, args.opts)
        validate_config(cfg, job=args.job, checks=PLANNING_CHECKS)
        report = budget_report(cfg, args.job)
    except UserError as err:
        exit_with_user_error(err)
    print(report)
    return report


if __name__ == "__main__":
    main()
