"""The checkpoints a training config will keep, before running it: the preflight line a run logs.

    python tools/checkpoint_budget.py --job pretrain --cfg configs/video/k400_pretrain_msd.yaml
    python tools/checkpoint_budget.py --job pretrain --cfg configs/video/k400_pretrain_msd.yaml \
        TRAIN.CHECKPOINT_PERIOD 1 TRAIN.KEEP_CHECKPOINTS 0 TRAIN.WEIGHTS_PERIOD 0

Sizes come from the config's model built on the meta device (no memory, no time): one full
training state (weights and optimizer state), one weights-only copy, and the total the run holds
at its end (``checkpoint-last.pth``, the kept ``checkpoint-EPOCH.pth`` and the ``weights-EPOCH.pth``
copies), against the free space where ``OUTPUT_DIR`` is (or would be).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import load_config  # noqa: E402
from common.engine.checkpoint_budget import budget_report  # noqa: E402

JOBS = ("pretrain", "finetune", "linprobe")


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="YAML config of the run")
    parser.add_argument("--job", choices=JOBS, required=True, help="the training job the config is for")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    report = budget_report(load_config(args.cfg, args.opts), args.job)
    print(report)
    return report


if __name__ == "__main__":
    main()
