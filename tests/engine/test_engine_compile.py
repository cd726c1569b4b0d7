"""``TRAIN.COMPILE`` in the jobs: a compiled run trains as the eager one, compiles once, writes
checkpoints an eager model loads, resumes, runs under bf16, and compiles validation and test.

The runs use ``aot_eager_counting`` (``counting_backend.py``): dynamo + AOTAutograd exactly as
with inductor, without the C++ compilation that would take minutes here; inductor's numerics
are checked in tests/models/test_compile.py. The 2-rank compiled run is in test_engine_ddp.py.
"""
import argparse
import json

import pytest
import torch
import torch._dynamo

from common.checkpoint import safe_load
from common.config import ConfigError, load_config
from common.engine.builders import build_model
from common.engine.compilation import compile_model, is_compiled
from common.engine.config_checks import validate_config
from common.engine.distributed import DistInfo
from common.engine.inference import load_run
from common.engine.inference_cli import load_from_args
from common.engine.jobs import run_job
from tests.engine.counting_backend import COMPILED_GRAPHS, COUNTING_BACKEND, register_counting_backend
from common.errors import UserError
from tests.engine.toy_data import DEMO, preempt_after_steps, toy_cfg
from tests.robustness.helpers import epoch_losses

COMPILED = ("TRAIN.COMPILE", "default", "TRAIN.COMPILE_BACKEND", COUNTING_BACKEND)


@pytest.fixture(autouse=True)
def _counting_backend():
    register_counting_backend()
    torch._dynamo.reset()
    COMPILED_GRAPHS.clear()


def _assert_same_losses(run, reference, rtol=1e-5):
    losses, expected = epoch_losses(run), epoch_losses(reference)
    assert sorted(losses) == sorted(expected) == [1, 2]
    for epoch in expected:
        assert losses[epoch] == pytest.approx(expected[epoch], rel=rtol), epoch


@pytest.mark.slow
def test_compiled_pretraining_trains_as_eager_compiles_once_and_saves_eager_weights(tmp_path):
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "eager"))
    cfg = toy_cfg("video_pretrain", tmp_path / "compiled", *COMPILED)
    run_job("pretrain", cfg)
    assert len(COMPILED_GRAPHS) == 1  # forward + loss of 2 epochs x 2 steps, 2 checkpoints: one graph
    _assert_same_losses(tmp_path / "compiled", tmp_path / "eager")
    saved = safe_load(tmp_path / "compiled" / "checkpoint-last.pth")["model"]
    eager = safe_load(tmp_path / "eager" / "checkpoint-last.pth")["model"]
    assert list(saved) == list(eager) and not any("_orig_mod" in k for k in saved)
    model = build_model(cfg, pretraining=True, crop_size=cfg.DATA.TRAIN_CROP_SIZE)
    model.load_state_dict(saved, strict=True)  # an eager model loads the compiled run's weights
    for key in eager:
        torch.testing.assert_close(saved[key], eager[key], rtol=1e-3, atol=1e-4, msg=key)


@pytest.mark.slow
def test_compiled_run_resumes_mid_epoch_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """Stopped by a preemption request after step 3 of 4, then resumed: both compiled."""
    args = (*COMPILED, "DETERMINISTIC", "True")
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "reference", *args))
    preempt_after_steps(monkeypatch, 3)
    with pytest.raises(SystemExit):
        run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "run", *args))
    monkeypatch.undo()
    assert safe_load(tmp_path / "run" / "checkpoint-last.pth")["iteration"] == 3
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path / "run", *args))
    _assert_same_losses(tmp_path / "run", tmp_path / "reference", rtol=1e-6)
    resumed, reference = (safe_load(tmp_path / d / "checkpoint-last.pth")["model"] for d in ("run", "reference"))
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_compiled_bf16_pretraining_trains_as_eager_bf16(tmp_path):
    run_job("pretrain", toy_cfg("image_pretrain", tmp_path / "eager", "TRAIN.PRECISION", "bf16"))
    run_job("pretrain", toy_cfg("image_pretrain", tmp_path / "compiled", "TRAIN.PRECISION", "bf16", *COMPILED))
    assert len(COMPILED_GRAPHS) == 1
    _assert_same_losses(tmp_path / "compiled", tmp_path / "eager", rtol=1e-3)


@pytest.mark.slow
def test_compiled_finetune_validates_and_tests_as_eager(tmp_path):
    """Finetuning (mixup, label smoothing) with validation each epoch, then the multi-view test."""
    records = {}
    for name, extra in (("eager", ()), ("compiled", COMPILED)):
        run_job("finetune", toy_cfg("video_finetune", tmp_path / name, "TRAIN.CHECKPOINT_FILE_PATH", "", *extra))
        records[name] = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    # train; eval on batches of 4 and 2 clips (6 val clips): the second size turns the batch dim dynamic
    assert 2 <= len(COMPILED_GRAPHS) <= 3
    _assert_same_losses(tmp_path / "compiled", tmp_path / "eager")
    for compiled, eager in zip(records["compiled"], records["eager"]):
        assert (compiled["val_top1"], compiled["val_top5"]) == (eager["val_top1"], eager["val_top5"])
    results = {}
    for name, extra in (("eager", ()), ("compiled", COMPILED)):
        checkpoint = str(tmp_path / name / "checkpoint-last.pth")
        results[name] = run_job("test", toy_cfg("video_finetune", tmp_path / f"test-{name}",
                                                "TEST.CHECKPOINT_FILE_PATH", checkpoint, *extra))
    assert results["compiled"] == results["eager"] and results["eager"]["num_videos"] == 7
    # predict compiles the run's model as it trained (--compile run, the default) or not (--compile off);
    # extract_features (no --compile: it calls the encoder's stages) and load_run (export) do not
    cpu = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    args = dict(run=str(tmp_path / "compiled"), checkpoint=None, model=None, batch_size=None, workers=None)
    loaded = load_from_args(argparse.Namespace(**args, compile="run"), cpu)
    assert not is_compiled(load_from_args(argparse.Namespace(**args, compile="off"), cpu).model)
    assert not is_compiled(load_from_args(argparse.Namespace(**args), cpu).model)
    plain = load_run(tmp_path / "compiled")
    assert is_compiled(loaded.model) and not is_compiled(plain.model)
    x = torch.rand(3, 3, *plain.model.input_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), plain.model(x))


def test_a_backend_this_torch_lacks_is_one_line():
    model = build_model(toy_cfg("video_pretrain", "unused"), pretraining=True, crop_size=32)
    with pytest.raises(UserError, match="'no_such_backend' is not a torch.compile backend of this torch"):
        compile_model(model, "default", backend="no_such_backend")


def test_compiled_model_keeps_its_state_dict_keys():
    model = build_model(toy_cfg("video_pretrain", "unused"), pretraining=True, crop_size=32)
    keys = list(model.state_dict())
    assert compile_model(model, "default", backend=COUNTING_BACKEND) is model
    assert list(model.state_dict()) == keys
    assert compile_model(model, "off") is model


@pytest.mark.parametrize("text, expected", [("off", "off"), ("False", "off"), ("on", "default"), ("True", "default"),
                                            ("default", "default"), ("max-autotune", "max-autotune")])
def test_compile_mode_in_yaml(tmp_path, text, expected):
    """YAML reads ``off`` / ``on`` (and False / True) as booleans: they stand for off / default."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"_BASE_: {DEMO / 'video_pretrain.yaml'}\nTRAIN:\n  COMPILE: {text}\n")
    assert load_config(str(recipe)).TRAIN.COMPILE == expected


@pytest.mark.parametrize("text, expected", [("off", "off"), ("False", "off"), ("True", "default"),
                                            ("max-autotune", "max-autotune")])
def test_compile_mode_on_the_command_line(text, expected):
    assert load_config(overrides=["TRAIN.COMPILE", text]).TRAIN.COMPILE == expected


@pytest.mark.parametrize("overrides, message", [
    (["TRAIN.COMPILE", "fast"], "TRAIN.COMPILE = 'fast': expected one of ['off', 'default', 'max-autotune']"),
    (["TRAIN.COMPILE", "default", "TRAIN.COMPILE_BACKEND", "inductr"], "TRAIN.COMPILE_BACKEND = 'inductr': expected one of"),
    (["TRAIN.COMPILE", "max-autotune", "TRAIN.COMPILE_BACKEND", "aot_eager"],
     "TRAIN.COMPILE_BACKEND = 'aot_eager': expected inductor (TRAIN.COMPILE max-autotune is an inductor mode)"),
])
def test_impossible_compile_settings_are_refused(tmp_path, overrides, message):
    cfg = load_config(str(DEMO / "video_pretrain.yaml"), ["OUTPUT_DIR", str(tmp_path), *overrides])
    with pytest.raises(ConfigError) as error:
        validate_config(cfg, job="pretrain")
    assert message in str(error.value)
