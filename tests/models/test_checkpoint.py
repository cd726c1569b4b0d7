"""Safe checkpoint loading and atomic writing."""
import argparse
import pickle

import pytest
import torch

from common.checkpoint import (
    CheckpointError,
    atomic_save,
    classifier_state_from_pretraining,
    load_pretrained_into_classifier,
    model_state_dict,
    safe_load,
)
from tests.models.tiny import tiny_image_classifier, tiny_image_mae


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_safe_load_accepts_official_style_namespace_args(tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1.0)}, path)
    ckpt = safe_load(path)
    assert ckpt["args"].lr == 1.0 and torch.equal(ckpt["model"]["w"], torch.ones(2))


def test_safe_load_refuses_arbitrary_objects_naming_the_file(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    with pytest.raises(CheckpointError, match="evil.pth"):
        safe_load(path)
    with pytest.raises(CheckpointError, match="not found"):
        safe_load(tmp_path / "missing.pth")


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    atomic_save({"epoch": 1}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert safe_load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_model_state_dict_takes_model_entry_or_whole_dict():
    assert model_state_dict({"model": {"a": 1}}) == {"a": 1}
    assert model_state_dict({"a": 1}) == {"a": 1}
    with pytest.raises(CheckpointError):
        model_state_dict({"model": 3})


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod."])
def test_model_state_dict_drops_the_prefixes_of_ddp_and_torch_compile(prefix):
    """``torch.compile(model).state_dict()`` keys start with ``_orig_mod.``, DDP's with ``module.``."""
    weights = {"blocks.0.weight": 1, "head.bias": 2}
    assert model_state_dict({"model": {prefix + k: v for k, v in weights.items()}}) == weights
    partly = {"module.a": 1, "b": 2}  # a key without the prefix: a model's own names, kept
    assert model_state_dict(partly) == partly


def test_classifier_state_drops_pretraining_keys():
    mae, clf = tiny_image_mae(), tiny_image_classifier()
    state = classifier_state_from_pretraining(mae.state_dict(), clf)
    assert not any(k.startswith(("decoder", "mask_token", "stage1_output_decode", "norm.")) for k in state)
    assert set(state) == set(clf.state_dict()) - {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}


def test_shape_mismatch_is_a_clear_error():
    mae = tiny_image_mae(embed_dim=(16, 24, 40))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_pretrained_into_classifier(tiny_image_classifier(), {"model": mae.state_dict()})
