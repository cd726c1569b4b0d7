"""Jobs that ``test_engine_ddp.py`` runs on 2 CPU ranks (gloo), and their configs.

``python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_jobs.py OUT START CLASSIFIER``
pretrains from the weights ``START`` on the toy dataset with masks that every process draws
alike (``OUT/pretrain``), then runs the multi-view test of the classifier checkpoint
``CLASSIFIER`` (``OUT/test``). In both runs every rank writes the index of each sample it loads
to ``OUTPUT_DIR/loaded-rank<R>-of-<W>.txt``. Then the same pretraining with ``TRAIN.COMPILE``
(``OUT/compiled``), stopped by a preemption request after 3 steps and resumed; each rank writes
the number of graphs compiled so far after each step to ``compiled-graphs-rank<R>.txt``.
"""
import sys
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from common.config import load_config  # noqa: E402
from common.data import get_dataset_builder, register_dataset, registered_datasets  # noqa: E402
from common.engine import trainer  # noqa: E402
from common.engine.distributed import shutdown_distributed  # noqa: E402
from common.engine.jobs import run_job  # noqa: E402
from common.masking import tube_kept_tokens, tube_mask  # noqa: E402
from common.models import create_model, list_models, register_model  # noqa: E402
from tests.engine.counting_backend import COMPILED_GRAPHS, COUNTING_BACKEND, register_counting_backend  # noqa: E402
from tests.engine.toy_data import DEMO, TOY_NAME, register_toy_dataset, toy_cfg, toy_overrides  # noqa: E402

SHARED_MASK_MODEL = "videoconvmae_small_patch16_shared_masks"
RECORDING_DATASET = "engine_toy_recording"
TEST_CLASSES = 7  # the toy test set has 7 videos, labels index % classes: one video per class
MASK_SEED = 0
STOP_AFTER = 3  # steps of the interrupted compiled run (of 2 epochs x 2 steps)


class SharedTubeMasks:
    """Tube masks drawn from a private generator: every clip of a call gets the same mask, and
    each process draws the same sequence of masks. (The engine seeds each rank's global RNG
    with RNG_SEED + rank, so the model's default masks differ by rank by design: a DDP run and
    a one-process run could not be compared weight for weight with them.)"""

    def __init__(self, ratio: float):
        self.ratio = ratio
        self.rng = torch.Generator().manual_seed(MASK_SEED)

    def __call__(self, batch_size, grid, *, ratio=None, device=None):
        one = tube_mask(1, grid, self.ratio if ratio is None else ratio, rng=self.rng)
        return one.expand(batch_size, -1).to(device)

    def num_visible(self, grid, ratio=None):
        return tube_kept_tokens(grid, self.ratio if ratio is None else ratio)


def register_shared_mask_model() -> None:
    """``MODEL.NAME videoconvmae_small_patch16_shared_masks``: the video MAE with ``SharedTubeMasks``."""
    if SHARED_MASK_MODEL in list_models():
        return

    def videoconvmae_small_patch16_shared_masks(**kwargs):
        return create_model("videoconvmae_small_patch16", mask_generator=SharedTubeMasks(kwargs["mask_ratio"]),
                            **kwargs)
    register_model(modality="video")(videoconvmae_small_patch16_shared_masks)


class RecordingDataset(Dataset):
    """The toy dataset; each item loaded appends its index to ``record`` (a text file)."""

    def __init__(self, dataset: Dataset, record: Path):
        self.dataset, self.record = dataset, record
        self.collate_fn = dataset.collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with self.record.open("a") as f:
            f.write(f"{index}\n")
        return self.dataset[index]


def register_recording_dataset() -> None:
    """``DATA.DATASET engine_toy_recording``: records to ``OUTPUT_DIR/loaded-rank<R>-of-<W>.txt``."""
    register_toy_dataset()
    if RECORDING_DATASET in registered_datasets():
        return

    @register_dataset(RECORDING_DATASET)
    def build(cfg, mode):
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        return RecordingDataset(get_dataset_builder(TOY_NAME)(cfg, mode),
                                Path(cfg.OUTPUT_DIR) / f"loaded-rank{rank}-of-{world}.txt")


def pretrain_overrides(output_dir: Path, start: Path):
    """Video pretraining from the weights ``start``: 2 epochs of 2 steps of 8 clips, SGD (AdamW
    would turn the float noise of gradients that are 0 in exact arithmetic, e.g. the attention
    key bias's, into lr-sized steps that differ between the runs), no warm-up."""
    return toy_overrides(output_dir, "DATA.DATASET", RECORDING_DATASET, "MODEL.NAME", SHARED_MASK_MODEL,
                         "TRAIN.CHECKPOINT_FILE_PATH", str(start), "SOLVER.OPTIMIZING_METHOD", "sgd",
                         "SOLVER.BASE_LR", "1.0", "SOLVER.WARMUP_EPOCHS", "0.0")


def pretrain_cfg(output_dir: Path, start: Path):
    """The pretraining of ``pretrain_overrides``."""
    return load_config(str(DEMO / "video_pretrain.yaml"), pretrain_overrides(output_dir, start))


def multiview_test_cfg(output_dir: Path, checkpoint: Path):
    """Multi-view test of ``checkpoint`` on the 7 toy test videos (6 views each)."""
    return toy_cfg("video_finetune", output_dir, "DATA.DATASET", RECORDING_DATASET, "MODEL.NUM_CLASSES",
                   str(TEST_CLASSES), "TEST.CHECKPOINT_FILE_PATH", str(checkpoint))


def compiled_pretrain_cfg(output_dir: Path, start: Path):
    """``pretrain_cfg`` with ``TRAIN.COMPILE`` (the counting ``aot_eager`` backend)."""
    return load_config(str(DEMO / "video_pretrain.yaml"),
                       [*pretrain_overrides(output_dir, start), "TRAIN.COMPILE", "default",
                        "TRAIN.COMPILE_BACKEND", COUNTING_BACKEND])


def interrupted_then_resumed(cfg) -> None:
    """Pretraining stopped by a preemption request after ``STOP_AFTER`` steps, then run again: it
    resumes from the checkpoint of the stop."""
    steps = []
    real_step, real_requested = trainer._optimizer_step, trainer._preempt_requested

    def counting_step(*args, **kwargs):
        steps.append(1)
        return real_step(*args, **kwargs)
    trainer._optimizer_step = counting_step
    trainer._preempt_requested = lambda preemption: len(steps) == STOP_AFTER
    try:
        run_job("pretrain", cfg)
        raise AssertionError("the run was not stopped")
    except SystemExit:
        pass
    finally:
        trainer._optimizer_step, trainer._preempt_requested = real_step, real_requested
    run_job("pretrain", cfg)


def record_compiled_graphs() -> List[int]:
    """From now on, the number of graphs compiled so far is appended after every optimizer step."""
    counts: List[int] = []
    real_step = trainer._optimizer_step

    def recording_step(*args, **kwargs):
        result = real_step(*args, **kwargs)
        counts.append(len(COMPILED_GRAPHS))
        return result
    trainer._optimizer_step = recording_step
    return counts


def main(out: Path, start: Path, classifier: Path) -> None:
    register_shared_mask_model()
    register_recording_dataset()
    register_counting_backend()
    try:
        run_job("pretrain", pretrain_cfg(out / "pretrain", start))
        run_job("test", multiview_test_cfg(out / "test", classifier))
        compiled = out / "compiled"
        counts = record_compiled_graphs()
        interrupted_then_resumed(compiled_pretrain_cfg(compiled, start))
        (compiled / f"compiled-graphs-rank{dist.get_rank()}.txt").write_text(" ".join(map(str, counts)))
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:4]))
