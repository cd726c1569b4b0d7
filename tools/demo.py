"""The one-command demo: pretrain a tiny VideoConvMAE on synthetic motion clips, finetune it,
finetune the same network from scratch with the same budget, test both, print the table.

Usage: python tools/demo.py [--output-dir DIR] [--data-dir DIR] [--seed N] [--progress-every SECONDS] [KEY VALUE ...]
Writes OUTPUT_DIR/demo_results.json, reconstruction.png/.gif, pretrain_curve.png,
finetune_curve.png and one folder per stage (checkpoints, logs). The console shows each stage and a
progress line with an ETA every few seconds; the last lines give the paths of the results, pictures
and logs. Rerunning into the same folder resumes unfinished stages and keeps the timings of finished ones.
"""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.cli import exit_with_user_error  # noqa: E402
from common.engine.demo import (PROGRESS_EVERY_S, DemoPlan, check_demo_plan, format_table, result_paths,  # noqa: E402
                                run_demo)
from common.engine.progress import LOG_FILE, add_log_file, setup_logging, show_on_console_only  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

DEMO_LOGGER = "common.engine.demo"  # the console shows its stage lines and progress; every log goes to log.txt


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("output/demo"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="synthetic dataset folder, generated if missing (default: OUTPUT_DIR/data/kinetics)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the dataset is always the same)")
    parser.add_argument("--progress-every", type=float, default=PROGRESS_EVERY_S, metavar="SECONDS",
                        help="seconds between progress lines on the console (log.txt has every one)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides for every stage, e.g. SOLVER.MAX_EPOCH 1")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    configure_process()
    args = parse_args(argv)
    plan = DemoPlan(output_dir=args.output_dir, data_dir=args.data_dir, seed=args.seed, overrides=tuple(args.opts))
    try:
        check_demo_plan(plan)  # before the log file or the data is written
        results = run_logged(plan, progress_every_s=args.progress_every)
    except UserError as err:
        exit_with_user_error(err)
    print()
    print(format_table(results))
    print("\n".join(result_paths(plan, results)))
    return results


def run_logged(plan: DemoPlan, *, progress_every_s: float) -> dict:
    """``run_demo`` with the stage lines and a progress line every ``progress_every_s`` seconds on the
    console, and every log line in ``OUTPUT/log.txt``."""
    setup_logging(None, is_main=True)
    show_on_console_only([DEMO_LOGGER], progress_every_s=progress_every_s)
    log_file = add_log_file(str(plan.output_dir / LOG_FILE))
    try:
        return run_demo(plan)
    finally:
        show_on_console_only([])
        logging.getLogger().removeHandler(log_file)
        log_file.close()


if __name__ == "__main__":
    main()
