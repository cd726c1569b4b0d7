"""Re-encodes a video dataset for cheap loading (H.264, short side 320, keyframe every 16
frames, no audio, upright), in parallel and resumable, and writes train/val/test lists pointing
at the copies plus prepare_report.csv (every video's status; broken sources are listed, not fatal).

Usage: python tools/prepare_videos.py SRC_LIST_OR_DIR DST_DIR [--short-side 320] [--fps N] [--gop G] [--workers W]
                                      [--val-share F] [--test-share F] [--split-seed S] [--unlabeled] [--split S]
       python tools/prepare_videos.py VIDEO_DIR DST_DIR --kinetics-csv train.csv validate.csv [...]

SRC_LIST_OR_DIR: a "path label" list (named train/val/test.csv, or any name with --split) or a folder
with such lists or with train/ val/ test/ class folders (numbered by SRC/classids.json, else as the
folders of train/), or a plain folder of videos (any depth; first-level class folders give the labels
and classids.json, otherwise the lists are path-only, for pretraining). --val-share / --test-share
hold out seeded shares of each class of train where the source has no such split (finetuning needs a
val split; unlabeled sources refuse them). With --kinetics-csv, SRC is the folder holding the videos
of the official Kinetics annotation CSVs ({youtube_id}_{start:06d}_{end:06d}.mp4, in class folders or
flat; the test CSV's rows, without labels, give a path-only test list); DST then also gets
classids.json (class name -> id, sorted names). DST must not be SRC, nor a folder where an output
would land on a source (refused before anything is written).

Each source gets its own output (its path under SRC, percent-encoded: x y.mp4 -> x%20y.mp4,
clip.webm -> clip.webm.mp4). DST/manifest.json records the encode settings, the source, each output's
source and the split settings: a rerun with the same encode settings converts what is missing (new or
failed sources), keeps the rest and rewrites the lists (another --val-share or --split-seed re-encodes
nothing); other encode settings are refused with one line naming them, unless --overwrite. One run at
a time per DST; killing the main process ends its workers too.
"""
import argparse
import logging
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.cli import exit_with_user_error  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.manifest import OVERWRITE_FLAG  # noqa: E402
from videoconvmae.data.prepare import prepare_videos  # noqa: E402


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="list file or dataset folder (with --kinetics-csv: the video folder)")
    parser.add_argument("dst", help="folder for the prepared videos, lists and report")
    parser.add_argument("--short-side", type=int, default=320, help="short side of the outputs (smaller videos keep their size)")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: every source frame)")
    parser.add_argument("--gop", type=int, default=16, help="keyframe interval in frames")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality (lower: better, larger)")
    parser.add_argument("--preset", default="veryfast", help="x264 preset")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="parallel processes")
    parser.add_argument("--kinetics-csv", nargs="+", default=[], help="official Kinetics annotation CSVs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--val-share", type=float, default=0.0, help="share of each class of train held out for val")
    parser.add_argument("--test-share", type=float, default=0.0, help="share of each class of train held out for test")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out shares")
    parser.add_argument("--unlabeled", action="store_true",
                        help="a plain folder's sub-folders are not classes: path-only lists, for pretraining")
    parser.add_argument("--split", default="", help="the split (train, val, test) of a list file whose name does not "
                                                    "say it, e.g. kinetics400_train_list_videos.txt")
    parser.add_argument(OVERWRITE_FLAG, action="store_true",
                        help="start over: delete what an earlier run with other settings wrote in DST (only the files "
                             "its manifest names) instead of refusing; without it a rerun with the same encode "
                             "settings resumes and retries the sources that failed")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepared = prepare_videos(
            args.src, args.dst, short_side=args.short_side, fps=args.fps, gop=args.gop, crf=args.crf,
            preset=args.preset, workers=args.workers, kinetics_csvs=args.kinetics_csv, progress=not args.no_progress,
            val_share=args.val_share, test_share=args.test_share, split_seed=args.split_seed, unlabeled=args.unlabeled,
            split=args.split, overwrite=args.overwrite,
        )
    except UserError as err:
        exit_with_user_error(err)
    usable = prepared.count("converted") + prepared.count("exists")
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())
