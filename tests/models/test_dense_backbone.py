"""The dense-prediction backbone of paper §2.3: E1-E4 at any input size, the windowed stage 3
with shared relative position biases, checkpoint loading, and a torchvision Mask R-CNN on top."""
import math

import pytest
import timm
import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

import imageconvmae.models  # noqa: F401  registration happens on import
import videoconvmae.models  # noqa: F401
from common.checkpoint import atomic_save, load_pretrained_into_classifier
from common.layers.window_attention import (
    RelativePositionBias,
    attention,
    default_global_blocks,
    relative_position_index,
    window_attention,
)
from common.models.detection import FPNBackbone
from common.pos_embed import resize_pos_embed
from tests.models.tiny import TINY, tiny_image_classifier, tiny_image_mae

TINY_DET = dict(TINY, depth=(1, 1, 4))


def _features(**kw):
    return timm.create_model("convvit_small_patch16", features_only=True, img_size=64, **{**TINY_DET, **kw})


def test_default_global_blocks_scale_the_convmae_b_pattern():
    assert default_global_blocks(11) == (0, 3, 6, 10)  # 1st, 4th, 7th, 11th
    assert default_global_blocks(23) == (0, 7, 13, 22)
    assert default_global_blocks(31) == (0, 9, 18, 30)
    assert default_global_blocks(4) == (0, 1, 2, 3)


def test_local_blocks_alternate_shifts_and_are_configurable():
    model = tiny_image_classifier(depth=(1, 1, 11), window_size=7)
    assert model.global_blocks == (0, 3, 6, 10)
    assert model.block_shifts == [None, 0, 3, None, 0, 3, None, 0, 3, 0, None]
    custom = tiny_image_classifier(depth=(1, 1, 3), window_size=4, global_blocks=(2,), window_shift=False)
    assert custom.block_shifts == [0, 0, None]
    with pytest.raises(ValueError, match="global_blocks"):
        tiny_image_classifier(window_size=4, global_blocks=(5,))
    with pytest.raises(ValueError, match="images"):
        timm.create_model("video_convvit_small_patch16", num_frames=4, img_size=32, window_size=4, **TINY)


def test_relative_position_index_counts_offsets():
    index = relative_position_index((2, 3))
    # token (r, c) = 3r + c; offset (dr, dc) -> (dr + 1) * 5 + (dc + 2)
    for q in range(6):
        for k in range(6):
            dr, dc = q // 3 - k // 3, q % 3 - k % 3
            assert index[q, k] == (dr + 1) * 5 + (dc + 2)


def _block(dim=16, heads=2):
    torch.manual_seed(0)
    return tiny_image_classifier(embed_dim=(8, 8, dim), num_heads=heads).blocks3[0].eval()


@pytest.mark.parametrize("grid,window", [((6, 6), 6), ((5, 5), 7)])
def test_one_window_over_the_grid_with_zero_bias_is_global_attention(grid, window):
    blk = _block()
    x = torch.randn(2, math.prod(grid), 16)
    bias = torch.zeros(2, window * window, window * window)
    out = window_attention(blk.attn, x, grid, window, 0, bias)
    torch.testing.assert_close(out, blk.attn(x))  # (5, 5) in a 7x7 window: padding is masked out


def _reference_window_attention(attn, x, grid, window, shift, table):
    """Naive full attention where token pairs in different shifted windows are masked."""
    h, w = grid
    n, length, c = x.shape
    qkv = attn.qkv(x).reshape(n, length, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    same = (((rows[:, None] - shift) // window == (rows[None] - shift) // window)
            & ((cols[:, None] - shift) // window == (cols[None] - shift) // window))
    rel = ((rows[:, None] - rows[None] + window - 1) * (2 * window - 1) + cols[:, None] - cols[None] + window - 1)
    bias = table[rel.clamp(0, table.shape[0] - 1)].permute(2, 0, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    scores = scores.masked_fill(~same, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, c)
    return attn.proj(out)


@pytest.mark.parametrize("grid,window,shift", [((8, 8), 4, 2), ((5, 7), 4, 2), ((5, 7), 3, 0)])
def test_shifted_padded_windows_match_naive_masked_attention(grid, window, shift):
    blk = _block()
    bias = RelativePositionBias((window, window), 2)
    torch.nn.init.normal_(bias.relative_position_bias_table)
    x = torch.randn(2, math.prod(grid), 16)
    out = window_attention(blk.attn, x, grid, window, shift, bias((window, window)))
    expected = _reference_window_attention(blk.attn, x, grid, window, shift, bias.relative_position_bias_table)
    torch.testing.assert_close(out, expected)


def test_relative_position_bias_resizes_for_other_grids():
    bias = RelativePositionBias((4, 6), 3)
    torch.nn.init.normal_(bias.relative_position_bias_table)
    own = bias((4, 6))
    assert own.shape == (3, 24, 24)
    table = bias.relative_position_bias_table
    assert torch.equal(own[:, 0, 0], table[relative_position_index((4, 6))[0, 0]])
    assert bias((5, 7)).shape == (3, 35, 35)


def test_global_blocks_with_zero_bias_equal_the_plain_classifier():
    torch.manual_seed(0)
    plain = tiny_image_classifier(depth=(1, 1, 3)).eval()
    det = tiny_image_classifier(depth=(1, 1, 3), window_size=4, global_blocks=(0, 1, 2)).eval()
    missing, unexpected = det.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["rel_pos_global.relative_position_bias_table",
                               "rel_pos_local.relative_position_bias_table"] and unexpected == []
    x = torch.randn(2, 3, 64, 96)
    torch.testing.assert_close(det(x), plain(x))
    x_attn = torch.randn(2, 24, 32)
    blk = plain.blocks3[0]
    torch.testing.assert_close(attention(blk.attn, x_attn, torch.zeros(2, 24, 24)), blk.attn(x_attn))


def test_features_only_at_any_multiple_of_32_with_interpolated_pos_embed():
    torch.manual_seed(0)
    features = _features().eval()
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    assert features.feature_info.channels() == [16, 24, 32, 32]
    x = torch.randn(1, 3, 96, 160)
    levels = features(x)
    assert [lv.shape for lv in levels] == [(1, 16, 24, 40), (1, 24, 12, 20), (1, 32, 6, 10), (1, 32, 3, 5)]
    # A fixed-size classifier built for 96x160 with the interpolated embedding gives the same E3.
    fixed = tiny_image_classifier(img_size=(96, 160), depth=TINY_DET["depth"]).eval()
    state = {k: v for k, v in features.model.state_dict().items()}
    state["pos_embed"] = resize_pos_embed(state["pos_embed"], (4, 4), (6, 10))
    fixed.load_state_dict(state, strict=False)
    torch.testing.assert_close(levels[2], fixed.forward_features(x))
    with pytest.raises(ValueError, match="multiples of"):
        features(torch.randn(1, 3, 72, 64))


def test_detection_backbone_loads_pretraining_checkpoint_with_only_new_tables_missing(tmp_path):
    path = tmp_path / "pretrain.pth"
    atomic_save({"model": tiny_image_mae(img_size=64, depth=TINY_DET["depth"]).state_dict()}, path)
    features = _features(window_size=3)
    missing, _ = load_pretrained_into_classifier(features.model, path)
    assert sorted(missing) == ["rel_pos_global.relative_position_bias_table",
                               "rel_pos_local.relative_position_bias_table"]


def test_mask_rcnn_trains_and_predicts_on_the_windowed_backbone():
    torch.manual_seed(0)
    backbone = FPNBackbone(_features(window_size=3, global_blocks=(0, 2)), out_channels=16)
    heads = dict(box_head=TwoMLPHead(16 * 7 * 7, 32), box_predictor=FastRCNNPredictor(32, 3),
                 mask_head=MaskRCNNHeads(16, [16], 1), mask_predictor=MaskRCNNPredictor(16, 16, 3))
    model = MaskRCNN(backbone, min_size=64, max_size=96, **heads,
                     rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=20,
                     rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                     box_batch_size_per_image=16, rpn_batch_size_per_image=32)
    images = [torch.rand(3, 64, 96), torch.rand(3, 64, 96)]
    targets = []
    for box in ([10.0, 8.0, 50.0, 40.0], [30.0, 20.0, 90.0, 60.0]):
        masks = torch.zeros(1, 64, 96, dtype=torch.uint8)
        x0, y0, x1, y1 = map(int, box)
        masks[0, y0:y1, x0:x1] = 1
        targets.append({"boxes": torch.tensor([box]), "labels": torch.tensor([1]), "masks": masks})
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    stage1 = backbone.body.model.blocks1[0].conv1.weight.grad
    assert stage1 is not None and stage1.abs().sum() > 0
    assert backbone.body.model.rel_pos_local.relative_position_bias_table.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    assert set(detections[0]) == {"boxes", "labels", "scores", "masks"}
    assert detections[0]["masks"].shape[1:] == (1, 64, 96)
