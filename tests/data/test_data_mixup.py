import pytest
import torch
from fvcore.common.config import CfgNode

from common.data import SpatialMixup, add_data_config, build_mixup


def _cutmix_only():
    return SpatialMixup(num_classes=4, mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.0, label_smoothing=0.1)


def test_build_mixup_reads_cfg_and_can_be_disabled():
    cfg = CfgNode()
    add_data_config(cfg)
    cfg.MODEL = CfgNode({"NUM_CLASSES": 7})
    mixer = build_mixup(cfg)
    assert mixer.mixer.num_classes == 7 and mixer.mixer.mixup_alpha == 0.8 and mixer.mixer.label_smoothing == 0.1
    cfg.MIXUP.ENABLE = False
    assert build_mixup(cfg) is None


def test_cutmix_box_lies_in_h_w_and_is_the_same_for_all_frames():
    torch.manual_seed(3)
    n, t, h, w = 4, 6, 16, 20
    for _ in range(10):
        inputs = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1, 1).expand(n, 3, t, h, w).clone()
        mixed, targets = _cutmix_only()(inputs.clone(), torch.arange(n))  # mixes in place, like timm
        pasted = mixed != inputs  # (N, C, T, H, W): where the flipped batch was pasted
        box = pasted[0, 0, 0]
        assert torch.equal(pasted, box.expand_as(pasted))  # same box for every sample, channel, frame
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        if len(rows):
            assert box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # a rectangle
        lam = 1 - box.float().mean()
        assert torch.allclose(targets.sum(1), torch.ones(n))
        off, on = 0.1 / 4, 1 - 0.1 + 0.1 / 4
        assert torch.allclose(targets[0, 0], lam * on + (1 - lam) * off, atol=1e-5)


def test_mixup_blends_images_and_rejects_other_ranks():
    mixer = SpatialMixup(num_classes=3, mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, switch_prob=0.0, label_smoothing=0.0)
    images = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    mixed, targets = mixer(images.clone(), torch.tensor([0, 2]))
    lam = targets[0, 0]
    assert mixed.shape == images.shape and torch.allclose(mixed[0], torch.full((3, 8, 8), 1 - lam.item()), atol=1e-6)
    with pytest.raises(ValueError):
        mixer(torch.zeros(2, 3, 8), torch.tensor([0, 1]))
