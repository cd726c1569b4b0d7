"""Pictures of a run: the masked-autoencoder reconstruction of a video or image (PNG grid of
original / masked input / reconstruction / pasted, plus an animated GIF for videos), and the
training curve from a run's JSON-lines log.

Usage: python tools/visualize.py --checkpoint OUT/checkpoint-last.pth --input clip.mp4 [more.mp4 ...] [--output-dir DIR]
       python tools/visualize.py --log OUT/log.jsonl [--keys train_loss] [--output-dir DIR]
"""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import load_config  # noqa: E402
from common.engine.reconstruct import write_reconstruction, write_training_curve  # noqa: E402


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="pretraining checkpoint (checkpoint-*.pth)")
    parser.add_argument("--input", type=Path, nargs="+",
                        help="videos (or, for image models, images) to reconstruct, one picture for all")
    parser.add_argument("--cfg", default=None, help="config of the checkpoint's run (default: the one it stores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mask")
    parser.add_argument("--log", type=Path, help="JSON-lines log (OUTPUT_DIR/log.jsonl) to plot")
    parser.add_argument("--keys", nargs="+", default=["train_loss"], help="log keys to plot")
    parser.add_argument("--output-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    if not args.log and not (args.checkpoint and args.input):
        parser.error("give --checkpoint and --input, or --log (or both)")
    if bool(args.checkpoint) != bool(args.input):
        parser.error("--checkpoint and --input go together")
    return args


def main(argv: Optional[List[str]] = None) -> List[Path]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = []
    if args.checkpoint:
        cfg = load_config(args.cfg) if args.cfg else None
        stem = args.input[0].stem if len(args.input) == 1 else "inputs"
        written += write_reconstruction(args.checkpoint, args.input, args.output_dir, name=f"{stem}_reconstruction",
                                        cfg=cfg, seed=args.seed, captions=[path.name for path in args.input])
    if args.log:
        written.append(write_training_curve(args.log, args.output_dir / "training_curve.png", args.keys))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
