"""The one-command demo: pretrain a tiny VideoConvMAE on synthetic motion clips, finetune it,
finetune the same network from scratch with the same budget, test both, print the table.

Usage: python tools/demo.py [--output-dir DIR] [--seed N] [KEY VALUE ...]
Writes OUTPUT_DIR/demo_results.json, reconstruction.png/.gif, pretrain_curve.png and one
folder per stage (checkpoints, logs). Rerunning into the same folder resumes finished stages;
use a fresh folder to time it.
"""
import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.progress import setup_logging  # noqa: E402
from videoconvmae.demo import RESULTS_FILE, DemoPlan, format_table, run_demo  # noqa: E402


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("output/video_demo"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="synthetic dataset folder, generated if missing (default: OUTPUT_DIR/data)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the dataset is always the same)")
    parser.add_argument("--clips-per-class", type=int, nargs=3, default=list(DemoPlan.__dataclass_fields__[
        "clips_per_class"].default), metavar=("TRAIN", "VAL", "TEST"), help="size of a newly generated dataset")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides for every stage, e.g. SOLVER.MAX_EPOCH 1")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    plan = DemoPlan(output_dir=args.output_dir, data_dir=args.data_dir or args.output_dir / "data", seed=args.seed,
                    clips_per_class=tuple(args.clips_per_class), overrides=tuple(args.opts))
    setup_logging(str(plan.output_dir), is_main=True)
    results = run_demo(plan)
    print()
    print(format_table(results))
    print(f"results: {plan.output_dir / RESULTS_FILE}; pictures: {', '.join(results['files'])}")
    return results


if __name__ == "__main__":
    main()
