"""Training-state checkpoints, initial weights, and the small builders around a run."""
import pytest
import torch
from torch import nn

from common.engine.builders import attach_probe_head, build_model, model_kwargs, per_rank_batch, with_classifier_weights
from common.modality import modality_of_config
from common.engine.checkpointing import (Position, epoch_checkpoint_name, find_resume_checkpoint,
                                         load_initial_weights, resume_training_state, save_training_state)
from common.engine.distributed import DistInfo
from common.engine.jobs import clips_per_step, resolve_test_checkpoint
from tests.engine.toy_data import toy_cfg

ONE = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def _trained_linear():
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def test_save_and_resume_restore_everything(tmp_path):
    model, opt = _trained_linear()
    torch.manual_seed(7)
    path = save_training_state(str(tmp_path), model=model, optimizer=opt, scaler=None, position=Position(3, 30, 0),
                               cfg_yaml="A: 1\n", dist=ONE)
    expected_next = torch.rand(1)
    assert path == find_resume_checkpoint(str(tmp_path))
    fresh = nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    position = resume_training_state(path, model=fresh, optimizer=fresh_opt, scaler=None)
    assert position == Position(3, 30, 0)
    assert torch.equal(fresh.weight, model.weight)
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.rand(1) == expected_next  # RNG continues where the saved run was


def test_no_checkpoint_means_fresh_start(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None
    assert epoch_checkpoint_name(12) == "checkpoint-12.pth"


def test_non_main_rank_does_not_write(tmp_path):
    model, opt = _trained_linear()
    other = DistInfo(rank=1, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert save_training_state(str(tmp_path), model=model, optimizer=opt, scaler=None, position=Position(),
                               cfg_yaml="", dist=other) is None
    assert find_resume_checkpoint(str(tmp_path)) is None


def test_load_initial_weights_pretraining_and_classifier(tmp_path):
    cfg = toy_cfg("video_pretrain", tmp_path)
    mae = build_model(cfg, pretraining=True, crop_size=32)
    torch.save({"model": mae.state_dict()}, tmp_path / "pre.pth")
    again = build_model(cfg, pretraining=True, crop_size=32)
    load_initial_weights(again, str(tmp_path / "pre.pth"), into_classifier=False)
    assert torch.equal(again.mask_token, mae.mask_token)
    classifier = build_model(toy_cfg("video_finetune", tmp_path), pretraining=False, crop_size=32)
    load_initial_weights(classifier, str(tmp_path / "pre.pth"), into_classifier=True)
    assert torch.equal(classifier.blocks3[0].attn.qkv.weight, mae.blocks3[0].attn.qkv.weight)


def test_probe_head_freezes_the_encoder(tmp_path):
    model = attach_probe_head(build_model(toy_cfg("image_linprobe", tmp_path), pretraining=False, crop_size=32))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.1.weight", "head.1.bias"]
    assert isinstance(model.head[0], nn.BatchNorm1d) and not model.head[0].affine


def test_modality_and_batch_helpers(tmp_path):
    video, image = toy_cfg("video_finetune", tmp_path), toy_cfg("image_finetune", tmp_path)
    assert (modality_of_config(video).name, modality_of_config(image).name) == ("video", "image")
    assert (modality_of_config(video).input_ndim, modality_of_config(image).input_ndim) == (5, 4)
    assert model_kwargs(video, pretraining=False, crop_size=32)["num_frames"] == 4
    assert "num_frames" not in model_kwargs(image, pretraining=False, crop_size=32)
    assert per_rank_batch(8, DistInfo(1, 2, 1, torch.device("cpu")), "TRAIN.BATCH_SIZE") == 4
    with pytest.raises(ValueError, match="TRAIN.BATCH_SIZE = 8 must be a positive multiple of the 3"):
        per_rank_batch(8, DistInfo(0, 3, 0, torch.device("cpu")), "TRAIN.BATCH_SIZE")
    acc = toy_cfg("video_finetune", tmp_path, "TRAIN.ACCUM_ITER", "3", "DATA.REPEATED_SAMPLING", "2")
    assert clips_per_step(acc) == 8 * 3 * 2


def test_resolve_test_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="TEST.CHECKPOINT_FILE_PATH"):
        resolve_test_checkpoint(toy_cfg("video_finetune", tmp_path))
    assert resolve_test_checkpoint(toy_cfg("video_finetune", tmp_path, "TEST.CHECKPOINT_FILE_PATH", "x.pth")) == "x.pth"


def test_classifier_weights_load_strictly_with_a_probe_head_when_the_weights_have_one(tmp_path):
    cfg = toy_cfg("video_linprobe", tmp_path)
    probe = attach_probe_head(build_model(cfg, pretraining=False, crop_size=32))
    loaded = with_classifier_weights(build_model(cfg, pretraining=False, crop_size=32), probe.state_dict())
    assert isinstance(loaded.head, nn.Sequential)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in probe.state_dict().items())
    plain = build_model(cfg, pretraining=False, crop_size=32)
    assert isinstance(with_classifier_weights(build_model(cfg, pretraining=False, crop_size=32),
                                              plain.state_dict()).head, nn.Linear)
    incomplete = {k: v for k, v in plain.state_dict().items() if not k.startswith("head.")}
    with pytest.raises(RuntimeError, match="head.weight"):
        with_classifier_weights(build_model(cfg, pretraining=False, crop_size=32), incomplete)
