"""Fixtures of the engine tests: the toy dataset, tiny configs, and an isolated logging set-up."""
from __future__ import annotations


import pytest

from tests.engine.toy_data import register_toy_dataset


@pytest.fixture(autouse=True)
def _toy_dataset():
    register_toy_dataset()


@pytest.fixture(scope="session")
def video_data(tmp_path_factory):
    """Generated K400-style mp4 dataset: 3 classes, 12 train / 3 val / 3 test clips."""
    from videoconvmae.data.synthetic import make_synthetic_video_dataset
    root = tmp_path_factory.mktemp("media")
    return make_synthetic_video_dataset(str(root), num_classes=3, clips_per_class=(4, 1, 1), num_frames=24,
                                        height=48, width=64, formats=("kinetics",))["kinetics"]


@pytest.fixture(scope="session")
def image_data(tmp_path_factory):
    """Generated ImageFolder dataset: 3 classes, 12 train / 3 val images."""
    from imageconvmae.data.synthetic import make_synthetic_image_folder
    return make_synthetic_image_folder(str(tmp_path_factory.mktemp("images")), num_classes=3,
                                       images_per_class=(4, 1), height=40, width=48)
