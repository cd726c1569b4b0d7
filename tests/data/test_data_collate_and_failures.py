import logging
import time

import pytest
import torch

from common.data import (
    BadFileLog,
    BoundedCall,
    SampleError,
    batch_inputs,
    call_with_timeout,
    collate_clips,
    collate_views,
    load_with_substitutes,
)


def test_collate_clips_flattens_repeated_views_into_the_batch():
    item = lambda i: [{"video": torch.full((3, 2, 4, 4), float(i)), "label": i, "path": f"{i}", "aug_index": k} for k in range(2)]  # noqa: E731
    batch = collate_clips([item(0), item(1), item(2)])
    assert batch["video"].shape == (6, 3, 2, 4, 4) and batch["label"].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch["aug_index"].tolist() == [0, 1] * 3 and batch["path"] == ["0", "0", "1", "1", "2", "2"]
    assert batch_inputs(batch) is batch["video"]


def test_collate_views_stacks_views_and_batch_inputs_finds_images():
    item = {"video": torch.zeros(15, 3, 2, 4, 4), "temporal_index": torch.arange(15) // 3, "label": 1, "error": ""}
    batch = collate_views([item, item])
    assert batch["video"].shape == (2, 15, 3, 2, 4, 4) and batch["temporal_index"].shape == (2, 15) and batch["error"] == ["", ""]
    images = collate_clips([[{"image": torch.zeros(3, 4, 4), "label": 0}]])
    assert batch_inputs(images).shape == (1, 3, 4, 4)
    with pytest.raises(KeyError, match="input keys"):
        batch_inputs({"label": torch.zeros(1)})


def test_load_with_substitutes_counts_skips_and_logs_each_bad_path_once(caplog, monkeypatch):
    bad = {1, 2}

    def load(i):
        if i in bad:
            raise SampleError(f"f{i}", "broken")
        return i

    choices = iter([2, 1, 3, 0])
    monkeypatch.setattr("random.randrange", lambda n: next(choices))
    log = BadFileLog()
    with caplog.at_level(logging.WARNING):
        assert load_with_substitutes(load, 1, num_items=4, path_of=lambda i: f"f{i}", bad_files=log, max_retries=5) == (3, 3)
        assert load_with_substitutes(load, 0, num_items=4, path_of=lambda i: f"f{i}", bad_files=log, max_retries=5) == (0, 0)
    assert [r.getMessage() for r in caplog.records] == ["skipping bad file f1: broken", "skipping bad file f2: broken"]
    assert len(log) == 2 and log.is_bad("f1") and not log.is_bad("f0")
    bad.update({0, 3})
    monkeypatch.setattr("random.randrange", lambda n: 0)
    with pytest.raises(RuntimeError, match="3 files in a row"):
        load_with_substitutes(load, 1, num_items=3, path_of=lambda i: f"g{i}", bad_files=BadFileLog(), max_retries=2)


def test_call_with_timeout_returns_raises_and_times_out():
    assert call_with_timeout(lambda: 5, 1.0) == 5 and call_with_timeout(lambda: 6, 0) == 6
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 1.0)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        call_with_timeout(lambda: time.sleep(3), 0.2)
    assert time.monotonic() - start < 1.0
    assert BoundedCall(lambda: 7).result(0) == 7


def test_uint8_batches_are_normalised_by_batch_inputs():
    from videoconvmae.data.transforms import to_normalized_cthw
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    frames = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)  # (T, C, H, W)
    sample = {"video": frames.permute(1, 0, 2, 3).contiguous(), "label": 1}
    batch = collate_clips([[sample], [sample]], normalization=(mean, std))
    assert batch["video"].dtype == torch.uint8
    inputs = batch_inputs(batch, torch.device("cpu"))
    assert inputs.dtype == torch.float32 and inputs.shape == (2, 3, 4, 8, 8)
    torch.testing.assert_close(inputs[1], to_normalized_cthw(frames, mean, std))
    views = collate_views([{"video": sample["video"][None].expand(3, -1, -1, -1, -1), "label": 0}], normalization=(mean, std))
    torch.testing.assert_close(batch_inputs(views)[0, 2], inputs[0])


def test_uint8_batch_without_normalization_is_an_error():
    with pytest.raises(KeyError, match="normalization"):
        batch_inputs({"video": torch.zeros(1, 3, 2, 4, 4, dtype=torch.uint8)})
    floats = torch.randn(1, 3, 2, 4, 4)
    assert batch_inputs({"video": floats}) is floats


def test_normalization_affine_matches_the_formula():
    from common.data.collate import normalization_affine
    scale, shift = normalization_affine((0.5, 0.25), (0.2, 0.5), (-1, 1))
    x = torch.tensor([[0.0, 255.0], [51.0, 102.0]])
    expected = (x / 255 - torch.tensor([[0.5], [0.25]])) / torch.tensor([[0.2], [0.5]])
    torch.testing.assert_close(x * scale - shift, expected)
