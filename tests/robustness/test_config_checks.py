"""Bad configs and arguments fail at start-up, before any data or model work, naming key and value."""
import re
from pathlib import Path

import pytest

import common.engine.jobs as jobs
from common.config import ConfigError, load_config
from common.engine.config_checks import validate_config
from common.engine import cli
from tests.engine.toy_data import DEMO, toy_cfg

REPO = Path(__file__).resolve().parents[2]
BAD = [
    (("DATA.TRAIN_CROP_SIZE", "40"), "DATA.TRAIN_CROP_SIZE = 40: expected a positive multiple of the model's spatial stride 16"),
    (("DATA.TEST_CROP_SIZE", "0"), "DATA.TEST_CROP_SIZE = 0"),
    (("DATA.NUM_FRAMES", "5"), "DATA.NUM_FRAMES = 5: expected a positive multiple of the tubelet size 2"),
    (("DATA.NUM_FRAMES", "1"), "DATA.NUM_FRAMES = 1"),
    (("MAE.MASK_RATIO", "1.0"), "MAE.MASK_RATIO = 1.0: expected a fraction in (0, 1)"),
    (("MAE.MASK_RATIO", "-0.1"), "MAE.MASK_RATIO = -0.1"),
    (("TRAIN.PRECISION", "fp8"), "TRAIN.PRECISION = 'fp8': expected one of ['auto', 'fp32', 'bf16', 'fp16']"),
    (("SOLVER.OPTIMIZING_METHOD", "adam"), "SOLVER.OPTIMIZING_METHOD = 'adam'"),
    (("SOLVER.MAX_EPOCH", "0"), "SOLVER.MAX_EPOCH = 0: expected >= 1"),
    (("SOLVER.BASE_LR", "-1.0"), "SOLVER.BASE_LR = -1.0: expected > 0"),
    (("SOLVER.BETAS", "[0.9, 1.5]"), "SOLVER.BETAS = [0.9, 1.5]"),
    (("TRAIN.ACCUM_ITER", "0"), "TRAIN.ACCUM_ITER = 0"),
    (("LOG.PERIOD", "0"), "LOG.PERIOD = 0"),
    (("MODEL.NAME", "videoconvmae_tiny"), "MODEL.NAME = 'videoconvmae_tiny'"),
    (("TRAIN.CHECKPOINT_FILE_PATH", "/nonexistent/ckpt.pth"), "TRAIN.CHECKPOINT_FILE_PATH = '/nonexistent/ckpt.pth'"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[o[0] + "=" + o[1] for o, _ in BAD])
def test_impossible_setting_is_refused_before_any_work(tmp_path, monkeypatch, override, message):
    built = []
    monkeypatch.setattr(jobs, "build_dataset", lambda *a: built.append("data"))
    monkeypatch.setattr(jobs, "prepare_model", lambda *a, **k: built.append("model"))
    with pytest.raises(ConfigError) as error:
        jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "out", *override))
    assert message in str(error.value)
    assert built == [] and not (tmp_path / "out").exists()  # nothing built, nothing written


def test_batch_must_split_across_ranks():
    cfg = toy_cfg("video_pretrain", "unused", "TRAIN.BATCH_SIZE", "6")
    validate_config(cfg, job="pretrain", world_size=2)
    with pytest.raises(ConfigError, match=r"TRAIN.BATCH_SIZE = 6: expected a positive multiple of the 4 rank"):
        validate_config(cfg, job="pretrain", world_size=4)


def test_every_problem_is_listed_at_once_and_image_models_have_no_tubelet():
    cfg = toy_cfg("image_pretrain", "unused", "DATA.TRAIN_CROP_SIZE", "24", "MAE.MASK_RATIO", "1.5",
                  "DATA.NUM_FRAMES", "3")
    with pytest.raises(ConfigError) as error:
        validate_config(cfg, job="pretrain")
    message = str(error.value)
    assert len(message.splitlines()) == 1  # one line, whatever the number of problems
    problems = message.removeprefix("invalid config: ").split("; ")
    assert [problem.split(" =")[0] for problem in problems] == ["DATA.TRAIN_CROP_SIZE", "MAE.MASK_RATIO"]


def test_mask_ratio_is_a_pretraining_setting():
    validate_config(toy_cfg("video_finetune", "unused", "MAE.MASK_RATIO", "1.0", "TRAIN.CHECKPOINT_FILE_PATH", ""),
                    job="finetune")


@pytest.mark.parametrize("args, message", [
    (["SOLVER.MAX_EPOC", "3"], "unknown config key 'SOLVER.MAX_EPOC' (from command line); did you mean 'SOLVER.MAX_EPOCH'?"),
    (["SOLVER.MAX_EPOCH", "three"], "config key SOLVER.MAX_EPOCH expects int (default 80), got str 'three'"),
    (["MAE.MASK_RATIO", "1.2"], "MAE.MASK_RATIO = 1.2"),
])
def test_demo_command_line_fails_before_generating_data(tmp_path, monkeypatch, args, message):
    made = []
    monkeypatch.setattr(cli, "ensure_synthetic_dataset", lambda cfg: made.append(cfg))
    argv = ["--cfg", str(DEMO / "video_pretrain.yaml"), "--make-synthetic-data", "OUTPUT_DIR", str(tmp_path), *args]
    with pytest.raises(ConfigError) as error:
        cli.config_from_args("pretrain", argv)
    assert message in str(error.value) and made == []


def test_mask_ratio_zero_masks_nothing_and_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"MAE.MASK_RATIO = 0.0: expected a fraction in \(0, 1\)"):
        validate_config(toy_cfg("video_pretrain", tmp_path, "MAE.MASK_RATIO", "0.0"), job="pretrain")


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "SOLVER:\n  BASE_LR: [1e-3\n"}, r"(?s)a.yaml: not valid YAML: .*line 2"),
    ({"a.yaml": "_BASE_: missing.yaml\n"}, r"cannot read config file .*missing.yaml \(the _BASE_ of .*a.yaml\)"),
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, r"_BASE_ cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"),
    ({"a.yaml": "- SOLVER.BASE_LR\n- 1e-3\n"}, r"a.yaml: expected a mapping of KEY: value at the top level, got a list"),
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "- 1\n"}, r"b.yaml \(the _BASE_ of .*a.yaml\): expected a mapping"),
], ids=["syntax", "missing-base", "cycle", "top-level-list", "list-in-base"])
def test_config_file_mistakes_are_config_errors_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(tmp_path / "a.yaml"))


def test_base_chain_merges_sections_key_by_key(tmp_path):
    _write(tmp_path / "base.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 7\n")
    _write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_EPOCH: 9\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH) == (0.5, 9)


def test_output_dir_that_is_a_file_is_a_config_error(tmp_path):
    taken = tmp_path / "results.txt"
    taken.write_text("mine")
    with pytest.raises(ConfigError, match=f"OUTPUT_DIR = '{taken}': expected a folder for the run"):
        jobs.run_job("pretrain", toy_cfg("video_pretrain", taken))
    assert taken.read_text() == "mine"


def test_a_run_that_fails_after_the_checks_leaves_config_yaml_as_it_was(tmp_path, monkeypatch):
    jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "1"))
    before = (tmp_path / "config.yaml").read_text()

    def broken_data(cfg, mode):
        raise FileNotFoundError("no train split")
    monkeypatch.setattr(jobs, "build_dataset", broken_data)
    with pytest.raises(FileNotFoundError):
        jobs.run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "SOLVER.MAX_EPOCH", "2"))
    assert (tmp_path / "config.yaml").read_text() == before


@pytest.mark.parametrize("job", sorted(cli.JOB_HELP))
def test_help_of_every_tool_names_a_config_that_exists(job):
    example = re.search(r"--cfg (configs\S+)", cli.build_parser(job).format_help().replace("\n", " ")).group(1)
    assert (REPO / example).is_file(), example
