"""Encoder features of your own videos (or images) with a trained run: pretraining or classifier.

Clip mode (default): one embedding per file, averaged over the test views ->
DIR/features.npy (N x C) + DIR/index.csv (row -> path). Window mode (--window-frames T
--window-stride S, in frames sampled DATA.SAMPLING_RATE source frames apart): sliding windows
over each whole video, every frame decoded once -> DIR/<relative path>.npy (num_windows x C)
and DIR/<relative path>.json (window start times in seconds). --pool none keeps the token grid
(T', H', W', C). DIR/manifest.json records the model (checkpoint sha256), options, inputs and
code version: a rerun with the same ones skips finished outputs and retries the files that failed
(listed until they succeed); other ones are refused with a line naming the difference, unless
--overwrite (start over). One run at a time per DIR; DIR is checked before any work.
torchrun --nproc_per_node=N shares the files over N ranks (write --run-dir there: torchrun reads
--run itself); unreadable files are listed at the end. The last line is a JSON summary.

Usage: python tools/extract_features.py --run OUTPUT_DIR [--checkpoint FILE] --output DIR [--overwrite] INPUT... | --list CSV
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.features import (POOLS, extract_clips_to_folder, extract_windows_to_folder,  # noqa: E402
                                    summary_line, summary_record)
from common.engine.inference_cli import (add_model_arguments, add_overwrite_argument,  # noqa: E402
                                         check_model_arguments, held_output, input_files, load_from_args,
                                         tool_process)
from common.errors import UserError  # noqa: E402
from common.manifest import OutputFolder  # noqa: E402


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python tools/extract_features.py --run output/demo/pretrain "
                                            "--output feats --window-frames 8 --window-stride 4 long_video.mp4")
    add_model_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--list", default="", help="file listing the inputs (first field of each line)")
    parser.add_argument("--window-frames", type=int, default=None,
                        help="window mode: frames per window (default: the run's DATA.NUM_FRAMES)")
    parser.add_argument("--window-stride", type=int, default=None,
                        help="window mode: sampled frames between window starts (default: --window-frames)")
    parser.add_argument("--pool", choices=POOLS, default="mean", help="mean: one vector; none: the token grid")
    add_overwrite_argument(parser)
    parser.add_argument("inputs", nargs="*", help="video/image files or folders (searched recursively)")
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    if bool(args.inputs) == bool(args.list):
        parser.error("give INPUT files/folders or --list CSV (one of them)")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    window_mode = args.window_frames is not None or args.window_stride is not None
    with tool_process() as dist, held_output(OutputFolder(args.output), dist) as out:
        extra = {"DATA.NUM_FRAMES": args.window_frames} if args.window_frames else {}
        loaded = load_from_args(args, dist, **extra)
        files = input_files(args.inputs, args.list, loaded)
        if window_mode:
            if loaded.modality.sliding_windows is None:
                raise UserError(f"window mode needs videos; {loaded.cfg.MODEL.NAME} is a {loaded.modality.name} model")
            stride = args.window_stride or loaded.cfg.DATA.NUM_FRAMES
            summary = extract_windows_to_folder(loaded, files, out, window_stride=stride, pool=args.pool,
                                                batch_size=args.batch_size or 8, overwrite=args.overwrite, dist=dist)
        else:
            summary = extract_clips_to_folder(loaded, [path for path, _ in files], out, pool=args.pool,
                                              overwrite=args.overwrite, dist=dist)
        record = summary_record(summary)
        if dist.is_main:
            for path, reason in summary.failed.items():
                print(f"unreadable: {path}: {reason}")
            print(f"{record['written']} written, {record['skipped']} already done, {record['failed']} unreadable; "
                  f"outputs in {args.output}")
            print(summary_line(summary))
        return record


if __name__ == "__main__":
    main()
