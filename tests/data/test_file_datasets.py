"""Test-mode datasets over lists of files (for predictions and features) and classids.json of the
image generator."""
import json

import torch
from PIL import Image
from torchvision.datasets.folder import find_classes

from common.modality import get_modality
from imageconvmae.data import build_eval_image_transform, load_rgb, make_synthetic_image_folder

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_image_generator_names_classes_in_image_folder_order(tmp_path):
    root = make_synthetic_image_folder(str(tmp_path), num_classes=12, images_per_class=(1, 0), height=16, width=16)
    _, folder_ids = find_classes(str(root / "train"))  # torchvision's order: class_0, class_1, class_10, ...
    assert json.loads((root / "classids.json").read_text()) == folder_ids and folder_ids["class_10"] == 2


def test_image_files_dataset_items_and_bad_files(tmp_path, make_cfg):
    good = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    cfg = make_cfg(TEST_CROP_SIZE=32)
    dataset = get_modality("image").file_dataset(cfg, [str(good), str(bad)])
    batch = dataset.collate_fn([dataset[0], dataset[1]])
    expected = build_eval_image_transform(crop_size=32, crop_pct=cfg.DATA.IMAGE_TEST_CROP_PCT, mean=MEAN, std=STD)(
        load_rgb(str(good)))
    assert torch.equal(batch["image"][0], expected) and torch.equal(batch["image"][1], torch.zeros(3, 32, 32))
    assert batch["error"][0] == "" and batch["error"][1].startswith(str(bad))
    assert batch["label"].tolist() == [-1, -1] and batch["index"].tolist() == [0, 1]


def test_video_files_dataset_is_the_multi_view_test_dataset(video_data, make_cfg):
    paths = sorted(str(p) for p in video_data["kinetics"].rglob("*.mp4"))[:2]
    cfg = make_cfg(NUM_FRAMES=4, TEST_CROP_SIZE=32)
    dataset = get_modality("video").file_dataset(cfg, paths + ["missing.mp4"])
    items = [dataset[i] for i in range(3)]
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    assert [item["path"] for item in items] == paths + ["missing.mp4"]
    assert items[0]["video"].shape == (views, 3, 4, 32, 32) and items[0]["error"] == "" and items[0]["label"] == -1
    assert "file not found" in items[2]["error"]
