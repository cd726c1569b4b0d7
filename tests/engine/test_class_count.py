"""The class count from the data (issue 24, point 2): finetune, linear probe and test take
``MODEL.NUM_CLASSES`` from the data when no config sets it (0 = from the data); a count that
contradicts the data, or a label beyond the count, stops before any work with one line naming both
counts and the override that fixes it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from common.checkpoint import safe_load
from common.config import load_config
from common.engine.cli import main as tool_main
from common.engine.jobs import run_job
from tests.engine.toy_data import DEMO, TINY_MODEL
from videoconvmae.data.synthetic import make_synthetic_video_dataset

TINY_RUN = [*TINY_MODEL, "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
            "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2", "SOLVER.MAX_EPOCH", "1", "DATA_LOADER.NUM_WORKERS", "0",
            "LOG.TENSORBOARD", "False", "TRAIN.CHECKPOINT_FILE_PATH", ""]


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory) -> Path:
    """Generated K400-style data with 2 classes (train.csv, val.csv, test.csv and classids.json)."""
    return make_synthetic_video_dataset(str(tmp_path_factory.mktemp("two")), num_classes=2, clips_per_class=(2, 1, 1),
                                        num_frames=16, height=48, width=64, formats=("kinetics", "ssv2"))


def _args(recipe: str, out: Path, data: Path, *extra: str):
    return ["--cfg", str(DEMO / f"{recipe}.yaml"), "OUTPUT_DIR", str(out), "DATA.PATH_TO_DATA_DIR", str(data),
            *TINY_RUN, *extra]


def _one_line_exit_2(capsys, job: str, args) -> str:
    with pytest.raises(SystemExit) as stop:
        tool_main(job, [str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("job, head", [("finetune", "head.weight"), ("linprobe", "head.1.weight")])
def test_finetune_and_linear_probe_take_the_count_from_the_data(two_classes, tmp_path, job, head):
    recipe = "video_finetune" if job == "finetune" else "video_linprobe"
    cfg = load_config(str(DEMO / f"{recipe}.yaml"), _args(recipe, tmp_path / "run", two_classes["kinetics"])[2:])
    run_job(job, cfg)
    weights = safe_load(tmp_path / "run" / "checkpoint-last.pth")["model"]
    assert weights[head].shape[0] == 2
    assert cfg.MODEL.NUM_CLASSES == 0  # the demo recipes leave the count to the data
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["MODEL"]["NUM_CLASSES"] == 2  # the run folder remembers the resolved count


def test_a_count_that_contradicts_the_data_stops_before_any_work(two_classes, tmp_path, capsys):
    out = tmp_path / "run"
    err = _one_line_exit_2(capsys, "finetune", _args("video_finetune", out, two_classes["kinetics"],
                                                     "MODEL.NUM_CLASSES", "4"))
    classids = two_classes["kinetics"] / "classids.json"
    assert err == (f"error: {classids}: 2 classes, but MODEL.NUM_CLASSES is 4: set MODEL.NUM_CLASSES 2 "
                   f"(or 0 to take the count from the data)")
    assert not out.exists()


def test_image_class_folders_give_the_count_and_a_contradiction_is_one_line(image_data, tmp_path, capsys):
    out = tmp_path / "run"
    err = _one_line_exit_2(capsys, "finetune", _args("image_finetune", out, image_data, "MODEL.NUM_CLASSES", "2",
                                                     "MIXUP.ENABLE", "False"))
    assert f"{image_data / 'classids.json'}: 3 classes, but MODEL.NUM_CLASSES is 2" in err  # it numbers the folders
    assert "set MODEL.NUM_CLASSES 3" in err and not out.exists()


def test_a_label_beyond_the_count_is_one_line_before_any_work(two_classes, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val"):
        lines = (two_classes["kinetics"] / f"{split}.csv").read_text().splitlines()
        rows = [f"{two_classes['kinetics'] / line.rsplit(' ', 1)[0]} {line.rsplit(' ', 1)[1]}" for line in lines]
        if split == "train":
            rows[1] = rows[1].rsplit(" ", 1)[0] + " 5"
        (data / f"{split}.csv").write_text("\n".join(rows) + "\n")
    (data / "classids.json").write_text(json.dumps({"left": 0, "right": 1}))
    out = tmp_path / "run"
    err = _one_line_exit_2(capsys, "finetune", _args("video_finetune", out, data))
    assert err.startswith(f"error: {data / 'train.csv'}, line 2: label 5 needs at least 6 classes, "
                          f"MODEL.NUM_CLASSES is 2 (from {data / 'classids.json'})")
    assert "set MODEL.NUM_CLASSES 6" in err and not out.exists()


def test_data_that_names_no_classes_needs_the_count(two_classes, tmp_path, capsys):
    data = tmp_path / "lists"
    data.mkdir()
    for split in ("train", "val"):
        lines = (two_classes["kinetics"] / f"{split}.csv").read_text().split("\n")
        (data / f"{split}.csv").write_text("".join(f"{two_classes['kinetics'] / line}\n" for line in lines if line))
    out = tmp_path / "run"
    err = _one_line_exit_2(capsys, "finetune", _args("video_finetune", out, data))
    assert "MODEL.NUM_CLASSES is 0 (the count from the data)" in err and "set MODEL.NUM_CLASSES" in err
    assert "classids.json" in err and not out.exists()
    run_job("finetune", load_config(str(DEMO / "video_finetune.yaml"),
                                    _args("video_finetune", out, data, "MODEL.NUM_CLASSES", "2")[2:]))
    assert safe_load(out / "checkpoint-last.pth")["model"]["head.weight"].shape[0] == 2


def test_what_names_the_classes(two_classes, image_data, tmp_path):
    from common.data.class_count import classes_of_data

    def found(dataset: str, data_dir: Path, *extra: str):
        classes = classes_of_data(load_config(None, ["DATA.DATASET", dataset, "DATA.PATH_TO_DATA_DIR", str(data_dir),
                                                     *extra]))
        return None if classes is None else (classes.count, classes.source)

    kinetics, ssv2 = two_classes["kinetics"], two_classes["ssv2"]
    assert found("kinetics", kinetics) == (2, str(kinetics / "classids.json"))
    assert found("ssv2", ssv2) == (2, str(ssv2 / "something-something-v2-labels.json"))
    assert found("imagenet", image_data) == (3, str(image_data / "classids.json"))  # it numbers the class folders
    (tmp_path / "images" / "train").mkdir(parents=True)
    for name in ("a", "b"):
        (tmp_path / "images" / "train" / name).mkdir()
    assert found("imagenet", tmp_path / "images") == (2, f"the class folders of {tmp_path / 'images' / 'train'}")
    folders = tmp_path / "folders"
    (folders / "train").mkdir(parents=True)
    for name in ("walk", "run", ".ipynb_checkpoints"):
        (folders / "train" / name).mkdir()
    assert found("kinetics", folders) == (2, f"the class folders of {folders / 'train'}")
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"a": 0, "b": 1, "c": 2}))
    assert found("kinetics", tmp_path / "nowhere", "DATA.CLASS_NAMES_FILE", str(names)) == (3, str(names))
    assert found("kinetics", tmp_path / "nowhere") is None


def test_the_paper_recipes_keep_their_counts():
    for recipe, count in [("configs/video/k400_finetune_msd.yaml", 400), ("configs/video/ssv2_finetune_msd.yaml", 174),
                          ("configs/image/convvit_base_finetune.yaml", 1000)]:
        assert load_config(str(Path(DEMO).parents[1] / recipe)).MODEL.NUM_CLASSES == count
