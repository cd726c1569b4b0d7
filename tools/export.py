"""Export a classifier (image or video) or the ``features_only`` backbone to ONNX or .pt2.

    python tools/export.py --run OUTPUT_DIR --format onnx --output model.onnx
    python tools/export.py --model convvit_base_patch16 --checkpoint finetuned.pth \\
        --format pt2 --output model.pt2
    python tools/export.py --model convvit_base_patch16 --checkpoint pretrain.pth --features-only \\
        --model-kwargs '{"img_size": 512, "window_size": 7}' --format onnx --output backbone.onnx

The batch dimension is dynamic. The exported file is run once on a random input of another
batch size and the largest difference to the eager model is printed. ``--run`` takes a
training run's folder (its ``config.yaml`` and ``checkpoint-last.pth``); ``--model`` a
registered name, a checkpoint (a finetuned classifier's, or for ``--features-only`` any
pretraining or finetuning checkpoint) and optional model keyword arguments as JSON.
ONNX needs the ``export`` extra: ``pip install -e .[export]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch import nn  # noqa: E402

from common.checkpoint import load_pretrained_into_classifier, model_state_dict, safe_load  # noqa: E402
from common.engine import inference  # noqa: E402
from common.engine.builders import with_classifier_weights  # noqa: E402
from common.export import EXPORT_FORMATS, export_model, load_exported, max_difference  # noqa: E402
from common.models import create_model  # noqa: E402

CHECK_BATCH = 3  # not the traced example's 2: the check also exercises the dynamic batch dim


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a training run's OUTPUT_DIR")
    source.add_argument("--model", help="registered model name (with --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, help="weights for --model")
    parser.add_argument("--features-only", action="store_true", help="export the multi-scale backbone (--model)")
    parser.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for --model")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    if args.model and not args.checkpoint:
        parser.error("--model needs --checkpoint")
    if args.run and (args.checkpoint or args.features_only):
        parser.error("--checkpoint and --features-only go with --model, not --run")
    return args


def load_run(run_dir: Path) -> nn.Module:
    """The classifier of a training run (its config and last checkpoint), via ``common.engine.inference``."""
    loaded = inference.load_run(run_dir, device="cpu")
    if loaded.pretraining:
        raise SystemExit(f"{run_dir} is a pretraining run: export a classifier run, or --model NAME "
                         "--checkpoint FILE --features-only for the backbone")
    return loaded.model


def load_classifier_weights(model: nn.Module, path: Path) -> nn.Module:
    """All weights of a classifier checkpoint (a linear probe's head included), strictly."""
    try:
        return with_classifier_weights(model, model_state_dict(safe_load(path)))
    except RuntimeError as err:
        raise SystemExit(f"{path}: not a checkpoint of this classifier: {err}") from None


def load_named(name: str, checkpoint: Path, features_only: bool, kwargs: dict) -> nn.Module:
    if not features_only:
        return load_classifier_weights(create_model(name, **kwargs), checkpoint)
    model = create_model(name, features_only=True, **kwargs)
    missing, _ = load_pretrained_into_classifier(model.model, checkpoint)
    if missing:
        logging.warning("weights not in %s keep their initialisation: %s", checkpoint, missing)
    return model


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.run:
        model = load_run(args.run)
    else:
        try:
            kwargs = json.loads(args.model_kwargs)
        except json.JSONDecodeError as err:
            raise SystemExit(f"--model-kwargs is not JSON: {err}") from None
        model = load_named(args.model, args.checkpoint, args.features_only, kwargs)
    export_model(model, args.format, args.output)
    diff = max_difference(model, load_exported(args.output), CHECK_BATCH)
    print(f"exported to {args.output} ({args.format}); max |exported - eager| on a random batch of "
          f"{CHECK_BATCH}: {diff:.3g}")


if __name__ == "__main__":
    main()
