import json
import logging
import os

import pytest
import torch
from PIL import Image

from common.data import batch_inputs, build_dataset
from imageconvmae.data import (
    ImageFolderDataset,
    build_eval_image_transform,
    build_finetune_image_transform,
    build_pretrain_image_transform,
    load_rgb,
    make_synthetic_image_folder,
)
from common.data import SampleError
from common.data.class_count import resolve_num_classes
from common.errors import DataNotFoundError, UserError

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    return make_synthetic_image_folder(str(tmp_path_factory.mktemp("images")), num_classes=3, images_per_class=(2, 1))


@pytest.mark.parametrize("mode, count", [("pretrain", 6), ("finetune", 6), ("val", 3), ("test", 3)])
def test_imagenet_modes(make_cfg, image_root, mode, count):
    cfg = make_cfg(DATASET="imagenet", PATH_TO_DATA_DIR=str(image_root), NUM_CLASSES=3, REPEATED_SAMPLING=2)
    dataset = build_dataset(cfg, mode)
    assert isinstance(dataset, ImageFolderDataset) and len(dataset) == count
    batch = dataset.collate_fn([dataset[0], dataset[count - 1]])
    views = 2 if mode in ("pretrain", "finetune") else 1
    assert batch_inputs(batch).shape == (2 * views, 3, 32, 32) and batch["image"].dtype == torch.float32
    labels = [-1, -1] if mode == "pretrain" else [0, 2]  # pretraining reads every image, without labels
    assert batch["label"].tolist() == [labels[0]] * views + [labels[1]] * views and batch["decode_failures"].sum() == 0


def test_val_class_folders_are_numbered_by_classids_json_without_train(make_cfg, image_root, tmp_path):
    """A val-only layout (testing a model elsewhere trained): its class folders take the ids of
    classids.json, or are refused with one line, for the dataset and the class count alike."""
    os.symlink(os.path.join(image_root, "val"), tmp_path / "val")
    cfg = make_cfg(DATASET="imagenet", PATH_TO_DATA_DIR=str(tmp_path), NUM_CLASSES=0)
    for refused in (lambda: resolve_num_classes(cfg, "test"), lambda: build_dataset(cfg, "test")):
        with pytest.raises(UserError, match=r"val: class folders but no .*train/ and no .*classids\.json") as error:
            refused()
        assert "\n" not in str(error.value) and "names no classes" not in str(error.value)
    (tmp_path / "classids.json").write_text(json.dumps({"class_2": 0, "class_1": 1, "class_0": 2, "unseen": 3}))
    resolved, origin = resolve_num_classes(cfg, "test")
    assert resolved.MODEL.NUM_CLASSES == 4 and str(tmp_path / "classids.json") in origin
    assert [label for _, label in build_dataset(resolved, "test").samples] == [2, 1, 0]


def test_a_flat_val_folder_says_its_files_are_not_in_class_folders(make_cfg, image_root, tmp_path):
    """ImageNet's val as shipped: 50000 images directly in val/."""
    os.symlink(os.path.join(image_root, "train"), tmp_path / "train")
    (tmp_path / "val").mkdir()
    for k in range(12):
        Image.new("RGB", (8, 8)).save(tmp_path / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
    with pytest.raises(DataNotFoundError, match=r"no images in the class folders of .*val \(none\); skipped 12: "
                                                r"ILSVRC2012_val_00000000\.JPEG \(not in a class folder\), .* and 2 more"):
        build_dataset(make_cfg(DATASET="imagenet", PATH_TO_DATA_DIR=str(tmp_path), NUM_CLASSES=3), "val")


def test_image_transforms_sizes_and_eval_is_deterministic():
    image = Image.new("RGB", (80, 60), (200, 30, 90))
    assert build_pretrain_image_transform(crop_size=24, mean=MEAN, std=STD)(image).shape == (3, 24, 24)
    finetune = build_finetune_image_transform(crop_size=24, rand_augment=(9, 2, 0.5), erase_prob=0.25, mean=MEAN, std=STD)
    assert finetune(image).shape == (3, 24, 24)
    evaluate = build_eval_image_transform(crop_size=24, mean=MEAN, std=STD)
    out = evaluate(image)
    expected = (torch.tensor([200, 30, 90]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(out[:, 12, 12], expected, atol=1e-2) and torch.equal(out, evaluate(image))


def test_bad_images_are_replaced_logged_and_counted(tmp_path, caplog, monkeypatch):
    make_synthetic_image_folder(str(tmp_path), num_classes=1, images_per_class=(1, 0))
    good = next((tmp_path / "train" / "class_0").iterdir())
    (good.parent / "truncated.jpg").write_bytes(good.read_bytes()[:200])
    (good.parent / "text.jpg").write_text("not an image")
    samples = [(str(p), 0) for p in sorted((tmp_path / "train" / "class_0").iterdir())]
    dataset = ImageFolderDataset(samples=samples, transform=build_eval_image_transform(crop_size=16, mean=MEAN, std=STD))
    good_index = [p for p, _ in dataset.samples].index(str(good))
    monkeypatch.setattr("random.randrange", lambda n: good_index)
    with caplog.at_level(logging.WARNING):
        samples = [dataset[i][0] for i in range(3)]
    assert [s["index"] for s in samples] == [good_index] * 3
    assert sorted(s["decode_failures"] for s in samples) == [0, 1, 1]
    assert "truncated.jpg" in caplog.text and "text.jpg" in caplog.text
    with pytest.raises(SampleError, match="missing.jpg"):
        load_rgb(str(tmp_path / "missing.jpg"))
