"""The classifiers as timm models: timm's model contract (its documented feature-extraction
paths and what its model test suite asserts of every registered model, written out here), and
every interface method on image and video classifiers.

Cost on a 2-core CPU: real forward/backward and torch.fx run on ConvMAE-S at a reduced input
(32x32: every parameter and code path, a fraction of the FLOPs; ConvMAE-B alone would add
~15 s), the contract with values on ConvMAE-S at its default 224x224 and on the video ConvMAE-S
widths at a reduced clip; the contract's shapes and the pretrained configs of all five image
and three video sizes run at their defaults (and features_only also at a non-square 256x320) on
the meta device, which checks every shape without allocating ConvMAE-L/H's 322M/666M parameters.
"""
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models._features_fx import create_feature_extractor, get_graph_node_names
from timm.optim import param_groups_layer_decay
from torch import nn

import imageconvmae.models  # noqa: F401  registration happens on import
import videoconvmae.models  # noqa: F401
from common.config import get_cfg
from common.models import CONVVIT_SIZES
from common.optim import param_groups
from tests.models.tiny import IMAGE_SIZE, TINY, VIDEO, tiny_image_classifier, tiny_image_mae, tiny_video_classifier

IMAGE_MODELS = [f"convvit_{size}_patch16" for size in ("small", "base", "base_star", "large", "huge")]
VIDEO_MODELS = ["video_convvit_small_patch16", "video_convvit_base_patch16", "video_convvit_large_patch16"]
DEFAULT_FRAMES = 16  # the video classifiers' default clip: 16 x 224 x 224
SIZE_OF = dict(zip(IMAGE_MODELS, ("small", "base", "base_star", "large", "huge")))
SIZE_OF.update(zip(VIDEO_MODELS, ("small", "base", "large")))
IMAGE_INPUT = (2, 3, *IMAGE_SIZE)
VIDEO_INPUT = (2, 3, VIDEO["num_frames"], VIDEO["img_size"], VIDEO["img_size"])


def test_timm_lists_the_models_and_refuses_pretrained():
    assert timm.list_models("convvit*") == sorted(IMAGE_MODELS)
    assert timm.list_models("video_convvit*") == sorted(VIDEO_MODELS)
    with pytest.raises(RuntimeError, match="No pretrained weights exist for video_convvit_small_patch16"):
        timm.create_model("video_convvit_small_patch16", pretrained=True, **VIDEO, **TINY)


def test_forward_backward_and_torch_fx_at_full_size_model():
    # ConvMAE-S, every parameter at its real shape, on a 32x32 input; the other sizes are the
    # same module types with other widths and depths (checked on the meta device below).
    model = timm.create_model("convvit_small_patch16", num_classes=42, img_size=32).train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    out.mean().backward()
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []

    model.eval()
    _, eval_nodes = get_graph_node_names(model)
    fx_model = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    torch.testing.assert_close(next(iter(fx_model(x).values())), model(x))


def _first_conv(model: nn.Module) -> nn.Module:
    """The convolution that sees the input: the first one the model registers."""
    return next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))


@pytest.mark.parametrize("name", IMAGE_MODELS + VIDEO_MODELS)
def test_pretrained_cfg_describes_the_model(name):
    data = get_cfg().DATA
    with torch.device("meta"):
        model = timm.create_model(name)
    cfg = model.pretrained_cfg
    video = name in VIDEO_MODELS
    assert cfg["architecture"] == name and not cfg["url"]
    # timm's configs describe one image: a clip is DEFAULT_FRAMES such frames.
    assert model.input_size == ((DEFAULT_FRAMES, 224, 224) if video else (224, 224))
    assert cfg["input_size"] == (model.in_chans, *model.input_size[-2:]) == (3, 224, 224)
    assert cfg["pool_size"] == model.grid[-2:] == (14, 14)
    assert cfg["fixed_input_size"] is True
    other = (1, 3, *model.input_size[:-1], model.input_size[-1] + 32)
    with pytest.raises(ValueError, match="expected input of shape"):
        model(torch.randn(other, device="meta"))
    # The evaluation transform timm derives from the cfg is the one the project trains with.
    assert cfg["mean"] == tuple(data.MEAN) and cfg["std"] == tuple(data.STD)
    assert cfg["crop_pct"] == (1.0 if video else data.IMAGE_TEST_CROP_PCT)
    assert timm.data.resolve_model_data_config(model)["input_size"] == cfg["input_size"]
    # The names timm's loaders use: the classifier it replaces, the conv it adapts to in_chans.
    head = model.get_submodule(cfg["classifier"])
    assert head is model.get_classifier() and isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (model.head_hidden_size, cfg["num_classes"])
    assert model.get_submodule(cfg["first_conv"]) is _first_conv(model)
    assert _first_conv(model).in_channels == cfg["input_size"][0]
    model.reset_classifier(7, "avg")
    assert model.get_submodule(cfg["classifier"]).out_features == 7


def _check_timm_contract(name: str, x: torch.Tensor, grid, values: bool, **kwargs) -> None:
    """timm's model contract for ``timm.create_model(name, **kwargs)`` on input ``x`` whose
    stage-3 grid is ``grid``: ``forward_features`` is the unpooled (N, C, *grid) map (images
    4-D, videos 5-D), ``forward_head(pre_logits=True)`` the pooled (N, head_hidden_size)
    features, ``reset_classifier(0)`` leaves the pooled features, ``reset_classifier(0, '')``
    and ``create_model(num_classes=0, global_pool='')`` the unpooled map; ``values``: also
    compare the tensors (a real device, not meta)."""
    model = timm.create_model(name, **kwargs).eval()
    assert model.num_classes > 0 and model.num_features > 0 and model.head_hidden_size > 0
    n = x.shape[0]
    feats = model.forward_features(x)
    assert feats.shape == (n, model.num_features, *grid) and feats.dim() == x.dim()
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (n, model.head_hidden_size)
    logits = model(x)
    assert logits.shape == (n, model.num_classes)

    model.reset_classifier(0)
    pooled = model(x)
    assert model.num_classes == 0 and pooled.shape == pre.shape
    model.reset_classifier(0, "")
    unpooled = model(x)
    assert model.num_classes == 0 and unpooled.shape == feats.shape
    model.reset_classifier(7, "avg")
    assert model(x).shape == (n, 7) and model.get_classifier().out_features == 7

    bare = timm.create_model(name, num_classes=0, global_pool="", **kwargs).eval()
    assert bare.num_classes == 0 and bare.global_pool == ""
    if values:
        # Same parameter names as the classifier without its head: its weights load strictly.
        bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
    bare_out = bare(x)
    assert bare_out.shape == feats.shape
    if values:
        torch.testing.assert_close(pooled, pre)
        torch.testing.assert_close(unpooled, feats)
        torch.testing.assert_close(bare_out, feats)


@pytest.mark.parametrize("name", IMAGE_MODELS + VIDEO_MODELS)
def test_timm_contract_shapes_of_every_size(name):
    video = name in VIDEO_MODELS
    with torch.device("meta"):
        x = torch.randn(1, 3, *((DEFAULT_FRAMES,) if video else ()), 224, 224)
        _check_timm_contract(name, x, ((DEFAULT_FRAMES // 2,) if video else ()) + (14, 14), values=False)
        model = timm.create_model(name)
    assert model.num_features == model.head_hidden_size == CONVVIT_SIZES[SIZE_OF[name]].embed_dim[2]


@torch.no_grad()
def test_timm_contract_values_convmae_s_at_224():
    _check_timm_contract("convvit_small_patch16", torch.randn(1, 3, 224, 224), (14, 14), values=True)


@torch.no_grad()
def test_timm_contract_values_video_convmae_s():
    # ConvMAE-S widths and depths, a 4 x 32 x 32 clip (the 16 x 224 x 224 default costs ~35 GFLOPs).
    _check_timm_contract("video_convvit_small_patch16", torch.randn(2, 3, 4, 32, 32), (2, 2, 2), values=True,
                         num_frames=4, img_size=32)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_features_only_levels_of_every_size(name):
    c1, c2, c3 = CONVVIT_SIZES[SIZE_OF[name]].embed_dim
    with torch.device("meta"):
        model = timm.create_model(name, features_only=True).eval()
        assert model.feature_info.channels() == [c1, c2, c3, c3]
        assert model.feature_info.reduction() == [4, 8, 16, 32]
        for h, w in [(224, 224), (256, 320)]:
            outs = model(torch.randn(1, 3, h, w))
            assert [o.shape for o in outs] == [(1, c, h // r, w // r) for c, r in
                                               zip([c1, c2, c3, c3], [4, 8, 16, 32])]


def test_features_only_out_indices():
    picked = timm.create_model("convvit_small_patch16", features_only=True, out_indices=(1, 3), **TINY)
    assert picked.feature_info.channels() == [24, 32] and picked.feature_info.reduction() == [8, 32]
    assert [o.shape for o in picked(torch.randn(1, 3, 64, 96))] == [(1, 24, 8, 12), (1, 32, 2, 3)]


def _stage3_tokens(model, x):
    """Stage 3 through the backbone's own stage functions (the pre-timm path)."""
    _, _, tokens = model.forward_conv_stages(x)
    return model.forward_stage3(tokens + model.pos_embed)


@pytest.mark.parametrize("build,shape", [(tiny_image_classifier, IMAGE_INPUT), (tiny_video_classifier, VIDEO_INPUT)])
def test_forward_features_and_head_decompose_the_classifier(build, shape):
    model = build().eval()
    x = torch.randn(shape)
    tokens = _stage3_tokens(model, x)
    feats = model.forward_features(x)
    assert feats.shape == (2, 32, *model.grid)
    torch.testing.assert_close(feats.flatten(2).transpose(1, 2), tokens)
    pooled = model.fc_norm(tokens.mean(dim=1))
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), pooled)
    torch.testing.assert_close(model(x), pooled @ model.head.weight.T + model.head.bias)


def test_global_pool_false_normalises_before_pooling():
    model = tiny_image_classifier(global_pool=False).eval()
    x = torch.randn(IMAGE_INPUT)
    normed = model.norm(_stage3_tokens(model, x))
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), normed.mean(dim=1))
    model.reset_classifier(0, "")  # the unpooled map of the encoder's norm
    torch.testing.assert_close(model(x).flatten(2).transpose(1, 2), normed)


def test_no_pooling_returns_the_stage3_map_without_fc_norm():
    # timm: the unpooled features stop before pooling and post-pooling layers (fc_norm).
    model = tiny_video_classifier(num_classes=0, global_pool="").eval()
    x = torch.randn(VIDEO_INPUT)
    out = model(x)
    assert out.shape == (2, 32, *model.grid)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), _stage3_tokens(model, x))


def tiny_image_features():
    return timm.create_model("convvit_small_patch16", features_only=True, **TINY)


@pytest.mark.parametrize("build", [tiny_image_classifier, tiny_video_classifier, tiny_image_mae, tiny_image_features])
def test_torchscript_is_refused_with_a_clear_error(build):
    model = build()
    with pytest.raises(NotImplementedError, match=r"does not support TorchScript .* torch\.export\.export"
                                                  r".*tools/export\.py.*torch\.compile"):
        with pytest.warns(FutureWarning, match="deprecated"):
            torch.jit.script(model)
    assert issubclass(NotImplementedError, RuntimeError)  # what timm's scripting tests catch


@pytest.mark.parametrize("build", [tiny_image_classifier, tiny_video_classifier])
def test_reset_and_get_classifier(build):
    model = build()
    assert model.get_classifier() is model.head and model.head.out_features == 5
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.num_classes == 3
    model.reset_classifier(0, "")
    assert isinstance(model.get_classifier(), torch.nn.Identity) and model.global_pool == ""
    with pytest.raises(ValueError, match="global_pool must be 'avg' or ''"):
        model.reset_classifier(0, "max")
    # A Linear head classifies pooled features: no pooling is for num_classes=0 only.
    with pytest.raises(ValueError, match="global_pool='' .* needs num_classes=0, got num_classes=4"):
        model.reset_classifier(4)
    assert model.global_pool == "" and isinstance(model.get_classifier(), torch.nn.Identity)
    model.reset_classifier(4, "avg")
    assert model.get_classifier().out_features == 4 and model.global_pool == "avg"


@pytest.mark.parametrize("build", [tiny_image_classifier, tiny_video_classifier])
def test_global_pool_takes_the_official_boolean_and_timms_names(build):
    layouts = {}
    for pool in (True, "avg", False, ""):
        model = build(global_pool=pool, num_classes=0 if pool == "" else 5)
        layouts[pool] = sorted(n for n, _ in model.named_parameters() if "norm" in n.split(".")[0])
        assert model.global_pool == ("" if pool == "" else "avg")
    # True/"avg"/"" keep the official classifier's fc_norm; False the encoder's norm.
    assert layouts[True] == layouts["avg"] == layouts[""] == ["fc_norm.bias", "fc_norm.weight"]
    assert layouts[False] == ["norm.bias", "norm.weight"]
    with pytest.raises(ValueError, match="global_pool must be True, False, 'avg' or '', got 'max'"):
        build(global_pool="max")
    with pytest.raises(ValueError, match="needs num_classes=0, got num_classes=5"):
        build(global_pool="")


@pytest.mark.parametrize("build,shape", [(tiny_image_classifier, IMAGE_INPUT), (tiny_video_classifier, VIDEO_INPUT)])
def test_grad_checkpointing_gives_the_same_gradients(build, shape):
    torch.manual_seed(0)
    model = build().train()
    x = torch.randn(shape)
    grads = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        assert model.use_checkpoint is enable
        model.zero_grad()
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("build", [tiny_image_classifier, tiny_video_classifier])
def test_no_weight_decay_and_group_matcher(build):
    model = build()
    assert model.no_weight_decay() == {"pos_embed"}
    fine, coarse = model.group_matcher(), model.group_matcher(coarse=True)
    assert re.match(fine["stem"], "blocks2.0.conv1.weight") and re.match(fine["stem"], "pos_embed")
    assert re.match(fine["blocks"], "blocks3.1.attn.qkv.weight").group(1) == "1"
    assert re.match(coarse["blocks"], "blocks3.1.attn.qkv.weight").groups() == ()
    assert not re.match(fine["stem"], "head.weight") and not re.match(fine["blocks"], "fc_norm.weight")


def _expected_layer_and_decay(name, param, depth3):
    """ConvMAE's layer-decay contract written out: (layer id, weight decay applies)."""
    if name.startswith(("patch_embed", "pos_embed", "blocks1.", "blocks2.")):
        layer = 0
    elif name.startswith("blocks3."):
        layer = int(name.split(".")[1]) + 1
    else:
        layer = depth3 + 1
    return layer, not (param.ndim == 1 or name == "pos_embed")


def _assignment(groups, model):
    by_param = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_param[id(p)] for n, p in model.named_parameters()}


@pytest.mark.parametrize("build", [tiny_image_classifier, tiny_video_classifier])
def test_layer_decay_groups_equal_the_contract_and_timms(build):
    model = build(depth=(1, 1, 3))
    decay, wd = 0.65, 0.05
    expected = {}
    for name, param in model.named_parameters():
        layer, decays = _expected_layer_and_decay(name, param, 3)
        expected[name] = (pytest.approx(decay ** (4 - layer)), wd if decays else 0.0)
    ours = _assignment(param_groups(model, weight_decay=wd, layer_decay=decay), model)
    timms = _assignment(param_groups_layer_decay(model, weight_decay=wd, layer_decay=decay,
                                                 no_weight_decay_list=model.no_weight_decay()), model)
    assert ours == expected
    assert timms == expected


def test_image_intermediates_are_e1_to_e4():
    model = tiny_image_classifier().eval()
    x = torch.randn(IMAGE_INPUT)
    final, levels = model.forward_intermediates(x)
    h, w = IMAGE_SIZE
    assert [t.shape for t in levels] == [(2, 16, h // 4, w // 4), (2, 24, h // 8, w // 8),
                                         (2, 32, h // 16, w // 16), (2, 32, h // 32, w // 32)]
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(levels[2], final)
    torch.testing.assert_close(levels[3], F.max_pool2d(levels[2], 2))
    x1, x2, _ = model.forward_conv_stages(x)
    torch.testing.assert_close(levels[0], x1.movedim(-1, 1))
    torch.testing.assert_close(levels[1], x2.movedim(-1, 1))
    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    torch.testing.assert_close(last_two, levels[2:])
    nhwc = model.forward_intermediates(x, indices=[0], output_fmt="NHWC", intermediates_only=True)
    torch.testing.assert_close(nhwc[0], x1)
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NCL")


def test_intermediates_norm_applies_the_final_norm():
    model = tiny_image_classifier(global_pool=False).eval()
    x = torch.randn(IMAGE_INPUT)
    raw = model.forward_intermediates(x, indices=[2], intermediates_only=True)[0]
    normed = model.forward_intermediates(x, indices=[2], norm=True, intermediates_only=True)[0]
    torch.testing.assert_close(normed, model.norm(raw.movedim(1, -1)).movedim(-1, 1))


def test_video_intermediates_are_stage_maps():
    model = tiny_video_classifier().eval()
    x = torch.randn(VIDEO_INPUT)
    final, levels = model.forward_intermediates(x)
    t, s = VIDEO["num_frames"], VIDEO["img_size"]
    assert [m.shape for m in levels] == [(2, 16, t // 2, s // 4, s // 4), (2, 24, t // 2, s // 8, s // 8),
                                         (2, 32, t // 2, s // 16, s // 16)]
    x1, x2, _ = model.forward_conv_stages(x)
    torch.testing.assert_close(levels[0], x1.movedim(-1, 1))
    torch.testing.assert_close(levels[1], x2.movedim(-1, 1))
    torch.testing.assert_close(levels[2], final)
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16]


def test_prune_intermediate_layers_drops_unused_stages():
    model = tiny_image_classifier().eval()
    x = torch.randn(IMAGE_INPUT)
    full = model.forward_intermediates(x, intermediates_only=True)
    assert model.prune_intermediate_layers((0, 1)) == [0, 1]
    assert len(model.blocks3) == 0 and model.pos_embed is None
    assert not any(n.startswith(("head.", "fc_norm.", "blocks3.")) for n, _ in model.named_parameters())
    pruned = model.forward_intermediates(x, indices=(0, 1), intermediates_only=True)
    torch.testing.assert_close(pruned, full[:2])


def test_features_only_video_returns_the_three_stage_maps():
    model = timm.create_model("video_convvit_small_patch16", features_only=True, **VIDEO, **TINY)
    outs = model(torch.randn(1, 3, 4, 64, 96))
    assert [o.shape for o in outs] == [(1, 16, 2, 16, 24), (1, 24, 2, 8, 12), (1, 32, 2, 4, 6)]
