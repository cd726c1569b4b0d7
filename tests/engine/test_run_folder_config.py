"""Run folders remember (issue 24, point 3): ``tools/test.py [--cfg RECIPE] OUTPUT_DIR RUN`` on a
finished training run starts from RUN's ``config.yaml`` (model, classes, data) with the command
line's overrides on top; a recipe (or override) that contradicts the run on the model or the classes
is one line, exit 2, nothing written; the run's ``config.yaml`` is kept."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from common.config import load_config
from common.engine.cli import main as tool_main
from common.engine.jobs import run_job
from tests.engine.toy_data import DEMO
from videoconvmae.data.synthetic import make_synthetic_video_dataset

RECIPE = DEMO / "video_finetune.yaml"
# Data-sized settings only: the model is the recipe's own (demo) model.
DATA_SIZED = ["SOLVER.MAX_EPOCH", "1", "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2", "DATA_LOADER.NUM_WORKERS", "0",
              "LOG.TENSORBOARD", "False", "TRAIN.CHECKPOINT_FILE_PATH", "", "DATA.NUM_FRAMES", "4",
              "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finetuning run of the demo recipe on 2-class data, trained with overrides a test must not repeat."""
    root = tmp_path_factory.mktemp("remember")
    data = make_synthetic_video_dataset(str(root / "data"), num_classes=2, clips_per_class=(2, 1, 1), num_frames=16,
                                        height=48, width=64, formats=("kinetics",))["kinetics"]
    run = root / "run"
    run_job("finetune", load_config(str(RECIPE), ["OUTPUT_DIR", str(run), "DATA.PATH_TO_DATA_DIR", str(data),
                                                  "MODEL.NUM_CLASSES", "2", *DATA_SIZED]))
    return run, data


def _fresh_copy(finished_run, tmp_path) -> Path:
    """The run folder without the outputs of an earlier test (config.yaml and the checkpoint)."""
    run, _ = finished_run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "checkpoint-last.pth"):
        (copy / name).write_bytes((run / name).read_bytes())
    return copy


@pytest.mark.parametrize("with_recipe", [False, True])
def test_test_on_a_run_folder_starts_from_its_config(finished_run, tmp_path, with_recipe):
    run = _fresh_copy(finished_run, tmp_path)
    saved = (run / "config.yaml").read_bytes()
    summary = tool_main("test", [*(["--cfg", str(RECIPE)] if with_recipe else []), "OUTPUT_DIR", str(run)])
    assert summary["num_videos"] == 2 and summary["num_failed"] == 0
    assert json.loads((run / "test_results.json").read_text())["num_videos"] == 2
    assert (run / "config.yaml").read_bytes() == saved  # the training run's config is kept
    used = yaml.safe_load((run / "test_config.yaml").read_text())
    assert used["MODEL"]["NUM_CLASSES"] == 2 and used["DATA"]["NUM_FRAMES"] == 4
    assert used["DATA"]["PATH_TO_DATA_DIR"] == str(finished_run[1])


def test_the_recipes_other_keys_that_differ_from_the_run_are_named_not_used(finished_run, tmp_path, caplog):
    run = _fresh_copy(finished_run, tmp_path)
    with caplog.at_level("WARNING"):
        tool_main("test", ["--cfg", str(RECIPE), "OUTPUT_DIR", str(run), "TEST.NUM_ENSEMBLE_VIEWS", "1"])
    warning = next(r.getMessage() for r in caplog.records if "otherwise than the run" in r.getMessage())
    # The recipe's data folder and clip length are not the run's: named, and the run's are used.
    assert f"DATA.PATH_TO_DATA_DIR: run {str(finished_run[1])!r}, recipe './output/demo/data/kinetics'" in warning
    assert "DATA.NUM_FRAMES: run 4, recipe 8" in warning
    assert "OUTPUT_DIR" not in warning and "TEST.NUM_ENSEMBLE_VIEWS" not in warning  # given on the command line
    used = yaml.safe_load((run / "test_config.yaml").read_text())
    assert used["DATA"]["PATH_TO_DATA_DIR"] == str(finished_run[1]) and used["DATA"]["NUM_FRAMES"] == 4


def test_command_line_overrides_go_on_top_of_the_run(finished_run, tmp_path):
    run = _fresh_copy(finished_run, tmp_path)
    tool_main("test", ["--cfg", str(RECIPE), "OUTPUT_DIR", str(run), "TEST.NUM_ENSEMBLE_VIEWS", "1"])
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert [int(r["num_views"]) for r in rows] == [3, 3]  # 1 temporal x 3 spatial views
    assert yaml.safe_load((run / "test_config.yaml").read_text())["TEST"]["NUM_ENSEMBLE_VIEWS"] == 1


@pytest.mark.parametrize("contradiction, expected", [
    ({"MODEL": {"NUM_CLASSES": 5}}, "MODEL.NUM_CLASSES: run 2, recipe 5"),
    ({"MODEL": {"EMBED_DIM": [16, 32, 64]}}, "MODEL.EMBED_DIM: run [32, 64, 128], recipe [16, 32, 64]"),
    ({"MODEL": {"NAME": "video_convvit_base_patch16"}},
     "MODEL.NAME: run 'video_convvit_small_patch16', recipe 'video_convvit_base_patch16'"),
])
def test_a_recipe_that_contradicts_the_run_is_one_line(finished_run, tmp_path, capsys, contradiction, expected):
    run = _fresh_copy(finished_run, tmp_path)
    recipe = tmp_path / "other.yaml"
    recipe.write_text(yaml.safe_dump({"_BASE_": str(RECIPE), **contradiction}))
    with pytest.raises(SystemExit) as stop:
        tool_main("test", ["--cfg", str(recipe), "OUTPUT_DIR", str(run)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err and "Traceback" not in err
    assert f"{recipe} contradicts the run in {run} on the model or the classes ({expected})" in err
    assert "leave out --cfg" in err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-last.pth", "config.yaml"]  # nothing written


def test_the_command_line_may_restore_what_a_recipe_contradicts(finished_run, tmp_path):
    run = _fresh_copy(finished_run, tmp_path)
    recipe = tmp_path / "other.yaml"
    recipe.write_text(yaml.safe_dump({"_BASE_": str(RECIPE), "MODEL": {"NUM_CLASSES": 5}}))
    summary = tool_main("test", ["--cfg", str(recipe), "OUTPUT_DIR", str(run), "MODEL.NUM_CLASSES", "2"])
    assert summary["num_videos"] == 2


def test_an_override_that_contradicts_the_run_is_one_line(finished_run, tmp_path, capsys):
    run = _fresh_copy(finished_run, tmp_path)
    with pytest.raises(SystemExit) as stop:
        tool_main("test", ["OUTPUT_DIR", str(run), "MODEL.NUM_CLASSES", "3"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "MODEL.NUM_CLASSES: run 2, command line 3" in err and "\n" not in err


def test_a_broken_run_config_is_one_line(finished_run, tmp_path, capsys):
    run = _fresh_copy(finished_run, tmp_path)
    (run / "config.yaml").write_text("MODEL:\n  NAME: [unclosed\n")
    with pytest.raises(SystemExit) as stop:
        tool_main("test", ["OUTPUT_DIR", str(run)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and f"{run / 'config.yaml'}: not valid YAML" in err and "\n" not in err
