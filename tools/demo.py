"""The one-command demo: pretrain a tiny VideoConvMAE on synthetic motion clips, finetune it,
finetune the same network from scratch with the same budget, test both, print the table.

Usage: python tools/demo.py [--output-dir DIR] [--data-dir DIR] [--seed N] [KEY VALUE ...]
Writes OUTPUT_DIR/demo_results.json, reconstruction.png/.gif, pretrain_curve.png,
finetune_curve.png and one folder per stage (checkpoints, logs). Rerunning into the same folder
resumes unfinished stages and keeps the timings of finished ones.
"""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.demo import RESULTS_FILE, DemoPlan, format_table, run_demo  # noqa: E402
from common.engine.progress import LOG_FILE, add_log_file, setup_logging, show_on_console_only  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

DEMO_LOGGER = "common.engine.demo"  # the console shows its stage lines; every log goes to log.txt


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("output/demo"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="synthetic dataset folder, generated if missing (default: OUTPUT_DIR/data/kinetics)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the dataset is always the same)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides for every stage, e.g. SOLVER.MAX_EPOCH 1")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    configure_process()
    args = parse_args(argv)
    plan = DemoPlan(output_dir=args.output_dir, data_dir=args.data_dir, seed=args.seed, overrides=tuple(args.opts))
    setup_logging(None, is_main=True)
    show_on_console_only([DEMO_LOGGER])
    log_file = add_log_file(str(plan.output_dir / LOG_FILE))
    try:
        results = run_demo(plan)
    finally:
        show_on_console_only([])
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    print()
    print(format_table(results))
    print(f"results: {plan.output_dir / RESULTS_FILE}; pictures: {', '.join(results['files'])}; "
          f"full logs: {plan.output_dir}/log.txt and each stage's log.txt")
    return results


if __name__ == "__main__":
    main()
