"""Pretraining models and classifiers: the paper's contracts, on tiny CPU models."""
import pytest
import timm
import torch

from common.masking import block_wise_masks
from common.models import CONVVIT_SIZES, create_model, list_models, register_model
from tests.models.tiny import (
    IMAGE_SIZE,
    VIDEO,
    tiny_image_classifier,
    tiny_image_mae,
    tiny_video_classifier,
    tiny_video_mae,
)

IMAGE_INPUT = (2, 3, *IMAGE_SIZE)
VIDEO_INPUT = (2, 3, VIDEO["num_frames"], VIDEO["img_size"], VIDEO["img_size"])


def _perturb_masked_pixels(model, x, mask):
    """Replace the input pixels of every masked stage-3 token by noise."""
    m1, = block_wise_masks(mask, model.grid, [model.patch_size])
    pixels = m1[:, None].bool().expand_as(x)
    return torch.where(pixels, torch.randn_like(x) * 5, x)


@pytest.mark.parametrize("masked_conv,sparse_conv", [(True, True), (True, False), (False, False)],
                         ids=["sparse", "dense", "unmasked-conv"])
@pytest.mark.parametrize("build,shape", [(tiny_image_mae, IMAGE_INPUT), (tiny_video_mae, VIDEO_INPUT)],
                         ids=["image", "video"])
def test_masked_convolution_leaks_nothing(build, shape, masked_conv, sparse_conv):
    """Masked pixels reach neither the encoder output nor ``pred``, on the sparse (visible
    blocks only) and on the dense masked path; without masked convolution they do."""
    model = build(masked_conv=masked_conv, sparse_conv=sparse_conv).eval()
    x = torch.randn(shape)
    mask = model.random_masking(shape[0])
    x2 = _perturb_masked_pixels(model, x, mask)
    with torch.no_grad():
        latent, _ = model.forward_encoder(x, mask)
        latent2, _ = model.forward_encoder(x2, mask)
        _, pred, _ = model(x, mask=mask)
        _, pred2, _ = model(x2, mask=mask)
    if masked_conv:
        torch.testing.assert_close(latent, latent2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pred, pred2, rtol=1e-5, atol=1e-5)
    else:
        assert not torch.allclose(latent, latent2, atol=1e-3)
        assert not torch.allclose(pred, pred2, atol=1e-3)


@pytest.mark.parametrize("size", sorted(CONVVIT_SIZES))
def test_encoder_parameter_counts_match_table7(size):
    with torch.device("meta"):
        model = create_model(f"convvit_{size}_patch16", num_classes=0)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    paper = CONVVIT_SIZES[size].paper_params_m
    assert abs(params - paper) / paper < 0.03, (size, params, paper)


@pytest.mark.parametrize("name,kwargs,shape,tokens,pixels", [
    ("convmae_convvit_small_patch16", dict(img_size=(96, 128)), (2, 3, 96, 128), 48, 768),
    ("videoconvmae_small_patch16", dict(num_frames=8, img_size=64), (2, 3, 8, 64, 64), 64, 1536),
])
def test_pretraining_forward_backward_at_other_sizes(name, kwargs, shape, tokens, pixels):
    from tests.models.tiny import TINY, TINY_DECODER
    model = create_model(name, **kwargs, **TINY, **TINY_DECODER)
    x = torch.randn(shape)
    loss, pred, mask = model(x)
    assert pred.shape == (2, tokens, pixels) and mask.shape == (2, tokens)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    loss2, _, _ = model(x, mask=mask)
    assert torch.equal(loss.detach(), loss2.detach())


def test_default_mask_ratios():
    assert tiny_image_mae().random_masking(1).mean().item() == pytest.approx(0.75, abs=0.02)
    video = tiny_video_mae()
    mask = video.random_masking(1)  # 2x2x2 grid: int(0.9 * 4) = 3 of 4 per frame
    assert mask.sum().item() == 2 * 3
    _, _, mask = video(torch.randn(VIDEO_INPUT), mask_ratio=0.5)
    assert mask.sum(1).tolist() == [4, 4]


def test_input_shape_errors_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 96\)"):
        tiny_image_mae()(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="divisible by the model's total stride"):
        tiny_image_mae(img_size=100)
    with pytest.raises(ValueError, match="tubelet_size"):
        tiny_video_mae(num_frames=5)


def test_input_token_masking_processes_every_token():
    model = tiny_image_mae(masking="input_token")
    loss, pred, mask = model(torch.randn(IMAGE_INPUT))
    assert mask.shape == (2, 16 * 24)  # the stage-1 grid
    assert pred.shape == (2, 4 * 6, 768)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("mae,clf,shape", [
    (tiny_image_mae, tiny_image_classifier, IMAGE_INPUT),
    (tiny_video_mae, tiny_video_classifier, VIDEO_INPUT),
])
def test_pretraining_checkpoint_loads_into_classifier(mae, clf, shape, tmp_path):
    from common.checkpoint import atomic_save, load_pretrained_into_classifier
    path = tmp_path / "pretrain.pth"
    atomic_save({"model": mae().state_dict(), "epoch": 3}, path)
    classifier = clf()
    missing, unexpected = load_pretrained_into_classifier(classifier, path)
    assert sorted(missing) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert unexpected == []
    assert classifier(torch.randn(shape)).shape == (2, 5)


def test_video_checkpoint_loads_into_longer_clip_classifier():
    from common.checkpoint import load_pretrained_into_classifier
    state = {"model": tiny_video_mae().state_dict()}
    classifier = tiny_video_classifier(num_frames=8, img_size=64)
    missing, _ = load_pretrained_into_classifier(classifier, state, source_grid=(2, 2, 2))
    assert "pos_embed" not in missing
    assert classifier.pos_embed.shape == (1, 4 * 4 * 4, 32)
    assert classifier(torch.randn(1, 3, 8, 64, 64)).shape == (1, 5)


def test_image_pretraining_model_uses_official_names_and_shapes():
    model = create_model("convmae_convvit_base_patch16")
    sd = model.state_dict()
    expected = {
        "patch_embed1.proj.weight": (256, 3, 4, 4), "patch_embed1.norm.weight": (256,),
        "patch_embed2.proj.weight": (384, 256, 2, 2), "patch_embed3.proj.weight": (768, 384, 2, 2),
        "patch_embed4.weight": (768, 768), "pos_embed": (1, 196, 768),
        "blocks1.0.attn.weight": (256, 1, 5, 5), "blocks1.1.conv1.weight": (256, 256, 1, 1),
        "blocks2.1.mlp.fc1.weight": (1536, 384, 1, 1), "blocks3.10.attn.qkv.bias": (2304,),
        "blocks3.0.attn.proj.weight": (768, 768), "blocks3.0.mlp.fc2.weight": (768, 3072),
        "stage1_output_decode.weight": (768, 256, 4, 4), "stage2_output_decode.weight": (768, 384, 2, 2),
        "norm.weight": (768,), "decoder_embed.weight": (512, 768), "mask_token": (1, 1, 512),
        "decoder_pos_embed": (1, 196, 512), "decoder_blocks.7.norm1.weight": (512,),
        "decoder_norm.weight": (512,), "decoder_pred.weight": (768, 512),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert "blocks3.11.norm1.weight" not in sd and "cls_token" not in sd
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    # a checkpoint with exactly these names loads strictly
    model.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)


def test_classifier_official_names():
    sd = create_model("convvit_base_patch16").state_dict()
    assert "fc_norm.weight" in sd and "head.weight" in sd and "norm.weight" not in sd
    assert not any(k.startswith(("decoder", "mask_token", "stage1_output")) for k in sd)
    assert "norm.weight" in create_model("convvit_small_patch16", global_pool=False).state_dict()


def test_official_layernorm_eps():
    model = tiny_image_mae()
    assert model.blocks1[0].norm1.eps == 1e-5 and model.patch_embed1.norm.eps == 1e-5
    assert model.blocks3[0].norm1.eps == 1e-6 and model.norm.eps == 1e-6 and model.decoder_norm.eps == 1e-6


def test_ablation_switches():
    assert not hasattr(tiny_video_mae(multi_scale_decoder=False), "stage1_output_decode")
    assert tiny_video_mae().blocks1[0].attn.kernel_size == (3, 5, 5)
    assert tiny_video_mae(dw_kernel_size=7).blocks1[0].attn.kernel_size == (3, 7, 7)
    assert tiny_image_mae(dw_kernel_size=9).blocks2[0].attn.kernel_size == (9, 9)
    with pytest.raises(ValueError, match="masking"):
        tiny_image_mae(masking="grid")


def test_video_defaults_follow_design():
    with torch.device("meta"):
        model = create_model("videoconvmae_base_patch16")
    assert model.input_size == (16, 224, 224) and model.grid == (8, 14, 14)
    assert model.stage_strides == ((2, 4, 4), (1, 2, 2), (1, 2, 2))
    assert model.decoder_pred.out_features == 2 * 16 * 16 * 3
    assert len(model.decoder_blocks) == 4 and model.decoder_embed.out_features == 384
    assert model.mask_ratio == 0.9 and model.multi_scale_decoder


def test_timm_create_model_builds_classifiers():
    import imageconvmae  # noqa: F401  registration happens on import
    import videoconvmae.models  # noqa: F401
    model = timm.create_model("convvit_small_patch16", num_classes=7, img_size=64,
                              embed_dim=(16, 24, 32), depth=(1, 1, 1), num_heads=2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    video = timm.create_model("video_convvit_small_patch16", num_classes=3, num_frames=4, img_size=32,
                              embed_dim=(16, 24, 32), depth=(1, 1, 1), num_heads=2)
    assert video(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)
    with pytest.raises(RuntimeError, match="No pretrained weights exist for convvit_small_patch16"):
        timm.create_model("convvit_small_patch16", pretrained=True, img_size=64,
                          embed_dim=(16, 24, 32), depth=(1, 1, 1), num_heads=2)


def test_registry_lists_refuses_duplicates_and_suggests():
    names = list_models()
    assert "videoconvmae_base_patch16" in names and "convvit_huge_patch16" in names
    assert list_models("video_*") == ["video_convvit_base_patch16", "video_convvit_large_patch16",
                                      "video_convvit_small_patch16"]

    def convvit_base_patch16():
        return None
    with pytest.raises(ValueError, match="already registered"):
        register_model(convvit_base_patch16)
    with pytest.raises(KeyError, match="did you mean"):
        create_model("convvit_bse_patch16")


def test_classifier_features_and_checkpointing_agree():
    model = tiny_video_classifier(use_checkpoint=True).train()
    x = torch.randn(VIDEO_INPUT)
    feats = model.forward_features(x)
    assert feats.shape == (2, 32, *model.grid)
    model.eval()
    torch.testing.assert_close(model.forward_head(feats), model(x))
