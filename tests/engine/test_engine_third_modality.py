"""A third modality, registered through ``common.modality`` alone (nothing in ``common/`` names it):
single-channel spectrogram-like 2-D inputs, stored as ``.npy`` files, with their own dataset
class, sample keys, models and synthetic data. Pretrain -> finetune -> test runs on it."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, default_collate

from common.config import load_config
from common.data import build_dataset, register_dataset, registered_datasets
from common.engine.builders import build_model
from common.engine.demo import ensure_synthetic_dataset
from common.engine.jobs import run_job
from common.modality import Modality, modality_of_config, modality_of_dataset, register_modality
from common.models import ConvViT, MaskedAutoencoderConvViT, list_models, register_model
from common.models.factory import build_from_preset

NAME = "spectrogram"
KEY = "spectrogram"  # the sample key of the input: neither "video" nor "image"
DATASET = "toy_spectrograms"
SIZE = 32  # frequency bins x time steps
SPLITS = {"train": 12, "val": 4}
CLASSES = 2
TINY = dict(embed_dim=(16, 24, 32), depth=(1, 1, 2), num_heads=2, mlp_ratio=(2, 2, 2))


def spectrogram_geometry(img_size: int = SIZE, patch_size=(4, 2, 2)) -> Dict[str, Any]:
    return {"input_size": (img_size, img_size), "stage_strides": tuple((p, p) for p in patch_size)}


def _spectrogram(label: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy (1, F, T) map whose energy lies in the low (class 0) or high (class 1) bands."""
    x = rng.normal(0.0, 0.2, (1, SIZE, SIZE)).astype(np.float32)
    bands = slice(0, SIZE // 2) if label == 0 else slice(SIZE // 2, SIZE)
    x[:, bands] += 1.0
    return x


def make_spectrograms(folder: Path, cfg) -> None:
    rng = np.random.default_rng(0)
    for split, count in SPLITS.items():
        rows = []
        for number in range(count):
            label = number % CLASSES
            path = Path(folder) / split / f"{number}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, _spectrogram(label, rng))
            rows.append([f"{split}/{number}.npy", label])  # relative: the folder is built elsewhere, then moved
        with open(Path(folder) / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)


def load_spectrogram(path: Path, cfg, crop_size: int) -> torch.Tensor:
    return torch.from_numpy(np.load(path))[None]


class SpectrogramDataset(Dataset):
    """Items ``{spectrogram, label, index}``; test items also ``path``, ``error`` and V=1 views."""

    def __init__(self, rows: List[Tuple[str, int]], *, views: bool):
        self.rows, self.views = rows, views
        self.collate_fn = default_collate

    def __len__(self) -> int:
        return len(self.rows)

    def labelled_paths(self) -> List[Tuple[str, int]]:
        return list(self.rows)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path, label = self.rows[index]
        x = torch.from_numpy(np.load(path))
        if not self.views:
            return {KEY: x, "label": label, "index": index}
        return {KEY: x[None], "label": label, "index": index, "path": path, "error": ""}


def build_spectrograms(cfg, mode: str) -> SpectrogramDataset:
    split = "train" if mode in ("pretrain", "finetune") else "val"
    folder = Path(cfg.DATA.PATH_TO_DATA_DIR)
    with open(folder / f"{split}.csv") as f:
        rows = [(str(folder / path), int(label)) for path, label in csv.reader(f)]
    return SpectrogramDataset(rows, views=mode == "test")


def spectrogram_mae(**overrides):
    return build_from_preset(MaskedAutoencoderConvViT, "small", dict(in_chans=1, decoder_embed_dim=16, decoder_depth=1,
                                                                    decoder_num_heads=2), overrides, spectrogram_geometry)


def spectrogram_classifier(**overrides):
    return build_from_preset(ConvViT, "small", dict(in_chans=1), overrides, spectrogram_geometry)


def register_spectrogram_modality() -> None:
    if DATASET in registered_datasets():
        return
    register_dataset(DATASET)(build_spectrograms)
    register_model(modality=NAME)(spectrogram_mae)
    register_model(modality=NAME)(spectrogram_classifier)
    register_modality(Modality(
        name=NAME, input_key=KEY, input_ndim=4, channel_dim=-3, geometry=spectrogram_geometry,
        model_kwargs=lambda cfg: {}, load_input=load_spectrogram, file_suffixes=(".npy",),
        make_synthetic_data=make_spectrograms, datasets=(DATASET,),
    ))


def _cfg(tmp_path: Path, job: str, *extra: str):
    model = "spectrogram_mae" if job == "pretrain" else "spectrogram_classifier"
    return load_config(None, [
        "MODEL.NAME", model, "MODEL.NUM_CLASSES", str(CLASSES), "MODEL.EMBED_DIM", "[16, 24, 32]",
        "MODEL.DEPTH", "[1, 1, 2]", "MODEL.MLP_RATIO", "[2.0, 2.0, 2.0]", "MODEL.NUM_HEADS", "2",
        "MAE.MASK_RATIO", "0.5", "DATA.DATASET", DATASET, "DATA.PATH_TO_DATA_DIR", str(tmp_path / "data"),
        "DATA.TRAIN_CROP_SIZE", str(SIZE), "DATA.TEST_CROP_SIZE", str(SIZE), "DATA.MEAN", "[0.0]", "DATA.STD", "[1.0]",
        "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2", "TRAIN.PRECISION", "fp32", "SOLVER.MAX_EPOCH", "2",
        "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.BASE_LR", "0.05", "DATA_LOADER.NUM_WORKERS", "0",
        "LOG.TENSORBOARD", "False", "OUTPUT_DIR", str(tmp_path / job), *extra,
    ])


@pytest.fixture(scope="module", autouse=True)
def spectrogram_modality():
    register_spectrogram_modality()


def test_the_interface_answers_for_the_new_modality(tmp_path):
    cfg = _cfg(tmp_path, "finetune")
    assert modality_of_config(cfg).name == NAME and modality_of_dataset(DATASET).input_key == KEY
    assert list_models(modality=NAME) == ["spectrogram_classifier", "spectrogram_mae"]
    assert modality_of_config(cfg).stride() == (16, 16)
    model = build_model(cfg, pretraining=False, crop_size=SIZE)
    assert model(torch.randn(3, 1, SIZE, SIZE)).shape == (3, CLASSES)


def test_pretrain_finetune_test_on_a_third_modality(tmp_path):
    ensure_synthetic_dataset(_cfg(tmp_path, "pretrain"))
    assert len(build_dataset(_cfg(tmp_path, "pretrain"), "pretrain")) == SPLITS["train"]
    pretrained = run_job("pretrain", _cfg(tmp_path, "pretrain"))
    assert pretrained["epoch"] == 2 and np.isfinite(pretrained["train_loss"])

    start = ["TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "pretrain" / "checkpoint-last.pth")]
    finetuned = run_job("finetune", _cfg(tmp_path, "finetune", *start))
    assert finetuned["val_num_samples"] == SPLITS["val"]

    tested = run_job("test", _cfg(tmp_path, "finetune", "OUTPUT_DIR", str(tmp_path / "finetune")))
    saved = json.loads((tmp_path / "finetune" / "test_results.json").read_text())
    assert saved == tested and tested["num_videos"] == SPLITS["val"]
    with open(tmp_path / "finetune" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["path"] for row in rows] == [path for path, _ in build_spectrograms(_cfg(tmp_path, "test"), "test").rows]
    assert {row["num_views"] for row in rows} == {"1"}
