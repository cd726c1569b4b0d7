"""torch.export (.pt2) and ONNX (onnxruntime) exports equal the eager model, with a dynamic batch."""
import sys
from pathlib import Path

import pytest
import timm
import torch

import imageconvmae.models  # noqa: F401  registration happens on import
from common.checkpoint import atomic_save
from common.config import load_config
from common.engine.builders import build_model
from common.export import export_model, load_exported, max_difference
from tests.models.tiny import TINY, tiny_image_classifier, tiny_image_mae, tiny_video_classifier
from tests.scripts import load_script

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

REPO = Path(__file__).resolve().parents[2]


def _windowed_backbone():
    # The detection variant: one global block, one windowed block (padding + masks exported too).
    return timm.create_model("convvit_small_patch16", features_only=True, img_size=64, window_size=3,
                             global_blocks=(0,), **TINY)


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
@pytest.mark.parametrize("build", [tiny_image_classifier, tiny_video_classifier, _windowed_backbone])
def test_export_equals_eager_at_two_batch_sizes(build, fmt, tmp_path):
    torch.manual_seed(0)
    model = build().eval()
    path = export_model(model, fmt, tmp_path / f"model.{fmt}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no staging leftovers
    run = load_exported(path)
    for batch in (1, 3):  # one file, two batch sizes; output shapes are checked too
        assert max_difference(model, run, batch) < 1e-4


def test_export_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(tiny_image_classifier(), "tflite", tmp_path / "m.tflite")


def _tool():
    return load_script("tools/export.py", "export_tool")


def test_tool_exports_a_training_run(tmp_path, monkeypatch, capsys):
    cfg = load_config(None, ["MODEL.NAME", "convvit_small_patch16", "MODEL.EMBED_DIM", "[16, 24, 32]",
                             "MODEL.DEPTH", "[1, 1, 2]", "MODEL.NUM_HEADS", "2", "MODEL.MLP_RATIO", "[2.0, 2.0, 2.0]",
                             "MODEL.NUM_CLASSES", "5", "DATA.TEST_CROP_SIZE", "32"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.dump())
    atomic_save({"model": build_model(cfg, pretraining=False, crop_size=32).state_dict()}, run / "checkpoint-last.pth")
    monkeypatch.setattr(sys, "argv", ["export.py", "--run", str(run), "--format", "pt2",
                                      "--output", str(tmp_path / "run.pt2")])
    _tool().main()
    diff = float(capsys.readouterr().out.strip().rsplit(" ", 1)[-1])
    assert diff < 1e-4
    exported = torch.export.load(tmp_path / "run.pt2").module()
    assert exported(torch.randn(4, 3, 32, 32)).shape == (4, 5)


def test_tool_refuses_a_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "other.pth"
    atomic_save({"model": tiny_image_classifier(num_classes=7).state_dict()}, path)
    with pytest.raises(SystemExit, match="other.pth: not a checkpoint of this classifier"):
        _tool().load_named("convvit_small_patch16", path, False,
                           {"img_size": [64, 96], "num_classes": 5, **TINY})


def test_tool_loads_a_pretraining_checkpoint_into_the_backbone(tmp_path):
    path = tmp_path / "pretrain.pth"
    atomic_save({"model": tiny_image_mae(img_size=64).state_dict()}, path)
    backbone = _tool().load_named("convvit_small_patch16", path, True, {"img_size": 64, **TINY})
    state = torch.load(path, weights_only=True)["model"]
    torch.testing.assert_close(backbone.model.blocks3[0].attn.qkv.weight, state["blocks3.0.attn.qkv.weight"])
