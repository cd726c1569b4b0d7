"""Classify your own videos (or images, for an image run) with a trained run.

Each file is read as the run's multi-view test reads it (TEST.NUM_ENSEMBLE_VIEWS x
TEST.NUM_SPATIAL_CROPS views from one decode); the softmax scores are averaged over the views.
Prints a table and writes one JSON object per input: path, topk [{id, name, score}], num_views,
error (a file that cannot be read is reported in its row; the others go on). Beside the output,
FILE.jsonl.manifest.json records the model (checkpoint sha256), options, inputs and code
version: a rerun with the same ones keeps the predictions and retries the files that failed;
other ones are refused unless --overwrite. --output is checked before any work.

Usage: python tools/predict.py --run OUTPUT_DIR [--checkpoint FILE] [--topk 5] [--output FILE.jsonl] [--overwrite] INPUT...
       (INPUT: files or folders; torchrun --nproc_per_node=N tools/predict.py --run-dir OUTPUT_DIR ... splits
       the files over N ranks: torchrun reads --run itself)
"""
import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.inference import Prediction, collect_inputs, predict_to_file  # noqa: E402
from common.engine.inference_cli import (add_compile_argument, add_model_arguments, add_overwrite_argument,  # noqa: E402
                                         check_model_arguments, held_output, load_from_args, tool_process)
from common.manifest import OutputFolder  # noqa: E402


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example: python tools/predict.py --run output/demo/finetune_pretrained "
                                            "output/demo/data/kinetics/test")
    add_model_arguments(parser)
    add_compile_argument(parser)
    parser.add_argument("--topk", type=int, default=5, help="classes per file (default 5)")
    parser.add_argument("--output", default="predictions.jsonl", help="JSON-lines file (default predictions.jsonl)")
    add_overwrite_argument(parser)
    parser.add_argument("inputs", nargs="+", help="video/image files or folders (searched recursively)")
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    return args


def _label(top_class: dict) -> str:
    """``name (id)``, or ``class id`` when the run names no classes."""
    return f"{top_class['name']} ({top_class['id']})" if top_class["name"] else f"class {top_class['id']}"


def format_table(predictions: List[Prediction]) -> str:
    """One line per file: path, views, then ``name (id) score`` of each top class, or the error."""
    width = max(len(p.path) for p in predictions)
    lines = [f"{'path':<{width}}  views  top classes (softmax score)"]
    for p in predictions:
        if p.error:
            lines.append(f"{p.path:<{width}}  {p.num_views:>5}  ERROR {p.error}")
            continue
        classes = ", ".join(f"{_label(c)} {c['score']:.3f}" for c in p.topk)
        lines.append(f"{p.path:<{width}}  {p.num_views:>5}  {classes}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> List[Prediction]:
    args = parse_args(argv)
    with tool_process() as dist, held_output(OutputFolder(args.output, single_file=True), dist) as out:
        loaded = load_from_args(args, dist)
        paths = [path for path, _ in collect_inputs(args.inputs, loaded.modality)]
        run = predict_to_file(loaded, paths, out, topk=args.topk, overwrite=args.overwrite, dist=dist)
        if dist.is_main:
            print(format_table(run.predictions))
            print(f"{len(run.predictions)} files: {run.predicted} predicted, {run.reused} done before, {run.failed} "
                  f"unreadable; predictions written to {args.output}")
        return run.predictions


if __name__ == "__main__":
    main()
