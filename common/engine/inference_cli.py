"""Command line shared by ``tools/predict.py`` and ``tools/extract_features.py``: which model to
load, which files to read, the output held before any work, and the process set-up (logging,
ranks, user errors)."""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterator, List, Tuple

from common.engine.cli import exit_with_user_error
from common.engine.compilation import COMPILE_MODES, compile_model
from common.engine.distributed import DistInfo, init_distributed, run_on_main, shutdown_distributed
from common.engine.inference import LoadedModel, collect_inputs, load_run, read_input_list
from common.errors import UserError
from common.manifest import OVERWRITE_FLAG, OutputFolder
from common.process_settings import configure_process

RUN_SETTING = "run"  # --compile: as the run's TRAIN.COMPILE


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--run``, ``--checkpoint``, ``--model``, ``--batch-size``, ``--workers``."""
    # --run-dir: the same, for torchrun, whose own parser reads --run as an abbreviation of its --run-path.
    parser.add_argument("--run", "--run-dir", dest="run",
                        help="the run's OUTPUT_DIR (config.yaml + checkpoint-last.pth); under torchrun write --run-dir")
    parser.add_argument("--checkpoint", help="checkpoint file (default: the run's checkpoint-last.pth)")
    parser.add_argument("--model", help="registered model name, for a checkpoint that stores no config "
                                        "(e.g. an official ConvMAE file)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="files per forward pass (default: the run's TEST.BATCH_SIZE)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loader workers (default: the run's DATA_LOADER.NUM_WORKERS)")


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: start over instead of refusing an --output made with other settings or inputs."""
    parser.add_argument(OVERWRITE_FLAG, action="store_true",
                        help="start over: delete what an earlier run wrote in --output (only the files its manifest "
                             "names) instead of refusing an --output made with another model, options or inputs; "
                             "without it a rerun with the same ones resumes and retries the files that failed")


@contextmanager
def held_output(out: OutputFolder, dist: DistInfo) -> Iterator[OutputFolder]:
    """``out`` held by the main rank for the block (created, locked, checked writable, temp files
    of killed runs removed), before the model is loaded; a failure is one line on every rank."""
    with ExitStack() as held:
        def hold() -> None:
            held.enter_context(out)

        run_on_main(hold, dist)
        yield out


def check_model_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.run and not args.checkpoint:
        parser.error("give --run OUTPUT_DIR or --checkpoint FILE")


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """``--compile``: ``torch.compile`` of the model's forward, as the run trained (default) or not."""
    parser.add_argument("--compile", choices=(RUN_SETTING, *COMPILE_MODES), default=RUN_SETTING,
                        help="torch.compile the model's forward: as the run's TRAIN.COMPILE says (default), or off / a "
                             "mode (compilation takes seconds to minutes; it pays for many files)")


def load_from_args(args: argparse.Namespace, dist: DistInfo, **extra: Any) -> LoadedModel:
    """``load_run`` with the command line's model and loader settings (``extra``: more config keys),
    its forward compiled as ``args.compile`` says (``run``: the run's ``TRAIN.COMPILE``; absent: not
    compiled, e.g. features, which call the encoder's stages rather than its forward)."""
    overrides: Dict[str, Any] = dict(extra)
    if args.batch_size is not None:
        overrides["TEST.BATCH_SIZE"] = args.batch_size * dist.world_size  # TEST.BATCH_SIZE is global
    if args.workers is not None:
        overrides["DATA_LOADER.NUM_WORKERS"] = args.workers
    loaded = load_run(args.run, checkpoint=args.checkpoint, model_name=args.model, overrides=overrides,
                      device=dist.device)
    mode = getattr(args, "compile", "off")
    compile_model(loaded.model, loaded.cfg.TRAIN.COMPILE if mode == RUN_SETTING else mode,
                  backend=loaded.cfg.TRAIN.COMPILE_BACKEND)
    return loaded


def input_files(inputs: List[str], list_file: str, loaded: LoadedModel) -> List[Tuple[str, str]]:
    """(path, relative path) of the inputs, or of the files of ``list_file``."""
    return collect_inputs(read_input_list(list_file) if list_file else inputs, loaded.modality)


@contextmanager
def tool_process() -> Iterator[DistInfo]:
    """Set-up of an inference tool: process settings, INFO logging on the main rank, the process
    group under torchrun (left at the end); a ``UserError`` exits with status 2 and its message."""
    configure_process()
    dist = init_distributed("auto")
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    try:
        yield dist
    except UserError as err:
        exit_with_user_error(err)
    finally:
        shutdown_distributed()
