import random

import pytest
import torch

from videoconvmae.data.transforms import (
    MULTISCALE_OFFSETS,
    CentreViewTransform,
    FinetuneVideoTransform,
    MultiViewTransform,
    PretrainVideoTransform,
    channels_first,
    crop_resize,
    multiscale_crop_box,
    resize_short_side,
    spatial_crop_starts,
    spatial_crops,
    to_normalized_cthw,
    to_tchw,
)

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _clip(frames, t=8):
    return torch.from_numpy(frames[:t].copy())


def test_multiscale_crop_box_uses_the_scales_and_fixed_positions():
    sizes = {int(240 * s) for s in (1.0, 0.875, 0.75, 0.66)}
    for _ in range(200):
        top, left, h, w = multiscale_crop_box(240, 320, scales=(1.0, 0.875, 0.75, 0.66), max_distort=1)
        assert h in sizes and w in sizes and abs(sorted(sizes).index(h) - sorted(sizes).index(w)) <= 1
        assert top in {(240 - h) * r // 4 for r, _ in MULTISCALE_OFFSETS} and left in {(320 - w) * c // 4 for _, c in MULTISCALE_OFFSETS}


def test_to_normalized_cthw_matches_the_formula_and_flips_width():
    frames = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    expected = (frames.float().transpose(0, 1) / 255 - torch.tensor(MEAN).view(3, 1, 1, 1)) / torch.tensor(STD).view(3, 1, 1, 1)
    assert torch.allclose(to_normalized_cthw(frames, MEAN, STD), expected, atol=1e-5)
    assert torch.allclose(to_normalized_cthw(frames, MEAN, STD, flip=True), expected.flip(-1), atol=1e-5)
    assert torch.equal(channels_first(to_tchw(frames.permute(0, 2, 3, 1))), frames.transpose(0, 1))


@pytest.mark.parametrize("crop", ["multiscale", "random_resized"])
def test_pretrain_transform_shape_dtype_range(frames, crop):
    video = PretrainVideoTransform(crop_size=32, crop=crop, mean=MEAN, std=STD)(_clip(frames))
    assert video.shape == (3, 8, 32, 32) and video.dtype == torch.float32 and video.is_contiguous()
    low = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    high = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert bool((video.amin((1, 2, 3)) >= low - 1e-5).all()) and bool((video.amax((1, 2, 3)) <= high + 1e-5).all())
    with pytest.raises(ValueError):
        PretrainVideoTransform(crop_size=32, crop="centre", mean=MEAN, std=STD)


def test_finetune_rand_augment_is_the_same_on_all_frames():
    torch.manual_seed(1)
    still = torch.randint(0, 256, (1, 48, 64, 3), dtype=torch.uint8).expand(6, -1, -1, -1)
    transform = FinetuneVideoTransform(crop_size=32, rand_augment=(9, 4, 0.5), erase_prob=0.0, mean=MEAN, std=STD)
    for _ in range(5):
        video = transform(still)
        assert video.shape == (3, 6, 32, 32) and video.dtype == torch.float32
        assert torch.equal(video, video[:, :1].expand_as(video))


def test_finetune_random_erasing_cuts_one_box_through_all_frames():
    torch.manual_seed(2)
    still = torch.randint(0, 256, (1, 48, 64, 3), dtype=torch.uint8).expand(6, -1, -1, -1)
    transform = FinetuneVideoTransform(crop_size=32, rand_augment=None, erase_prob=1.0, mean=MEAN, std=STD)
    for _ in range(5):
        video = transform(still)  # erased pixels get fresh noise per frame, the rest stays equal
        erased = (video[:, 1:] != video[:, :1]).any(0)  # (T-1, H, W)
        assert erased[0].any() and torch.equal(erased, erased[:1].expand_as(erased))
        rows, cols = erased[0].any(1).nonzero().flatten(), erased[0].any(0).nonzero().flatten()
        assert erased[0][rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()


def test_spatial_crops_start_centre_end_of_the_long_side():
    assert spatial_crop_starts(100, 40, 3) == [0, 30, 60]
    assert spatial_crop_starts(100, 40, 1) == [30]
    landscape = torch.arange(4 * 10).view(1, 4, 10)
    crops = spatial_crops(landscape, 4, 3)
    assert [c[0, 0, 0].item() for c in crops] == [0, 3, 6] and all(c.shape == (1, 4, 4) for c in crops)
    portrait = torch.arange(10 * 4).view(1, 10, 4)
    assert [c[0, 0, 0].item() for c in spatial_crops(portrait, 4, 3)] == [0, 12, 24]


def test_resize_and_crop_resize_on_uint8():
    frames = to_tchw(torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8))
    assert resize_short_side(frames, 24).shape == (2, 3, 24, 32) and resize_short_side(frames, 24).dtype == torch.uint8
    assert crop_resize(frames, (8, 8, 20, 30), 16).shape == (2, 3, 16, 16)


def test_multi_view_transform_orders_views_clip_major(frames):
    decoded = torch.from_numpy(frames[:12].copy())
    clips = [torch.arange(0, 4), torch.arange(8, 12)]
    views = MultiViewTransform(crop_size=32, num_crops=3, mean=MEAN, std=STD)(decoded, clips)
    assert views.shape == (6, 3, 4, 32, 32)
    resized = resize_short_side(to_tchw(decoded), 32)  # 48x64 -> 32x43
    last = to_normalized_cthw(resized[8:12, :, :, resized.shape[-1] - 32 :], MEAN, STD)
    assert torch.allclose(views[5], last, atol=1e-5)  # clip 1, crop 2 = right edge of the late frames
    centre = CentreViewTransform(crop_size=32, mean=MEAN, std=STD)(decoded[:4])
    assert torch.allclose(centre, views[1], atol=1e-5)


def test_uint8_output_of_pretrain_and_multi_view_transforms_normalises_to_the_float_path(frames):
    from common.data.collate import normalize_uint8
    normalization = torch.tensor([MEAN, STD])
    kwargs = dict(mean=MEAN, std=STD)
    random.seed(3)
    floats = PretrainVideoTransform(crop_size=32, **kwargs)(_clip(frames))
    random.seed(3)
    raw = PretrainVideoTransform(crop_size=32, **kwargs, normalize=False)(_clip(frames))
    assert raw.dtype == torch.uint8 and raw.shape == floats.shape
    torch.testing.assert_close(normalize_uint8(raw, normalization, -4), floats)
    clips = [torch.arange(0, 8), torch.arange(4, 12)]
    views = MultiViewTransform(crop_size=32, num_crops=3, **kwargs)(torch.from_numpy(frames.copy()), clips)
    raw_views = MultiViewTransform(crop_size=32, num_crops=3, **kwargs, normalize=False)(torch.from_numpy(frames.copy()), clips)
    assert raw_views.dtype == torch.uint8
    torch.testing.assert_close(normalize_uint8(raw_views, normalization, -4), views)
