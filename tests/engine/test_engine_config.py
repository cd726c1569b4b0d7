"""Config loading: defaults, _BASE_, overrides, errors that name the key, saved resolved config."""
from pathlib import Path

import pytest
import yaml

from common.config import ConfigError, coerce_value, get_cfg, load_config, merge_checked, save_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_hold_engine_and_data_keys():
    cfg = get_cfg()
    assert cfg.TRAIN.BATCH_SIZE > 0 and cfg.SOLVER.BASE_LR > 0
    assert "NUM_FRAMES" in cfg.DATA and "NUM_WORKERS" in cfg.DATA_LOADER and "ALPHA" in cfg.MIXUP


def test_unknown_override_names_key_and_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_LRR.*did you mean 'SOLVER\.BASE_LR'"):
        load_config(None, ["SOLVER.BASE_LRR", "0.1"])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("TRAIN:\n  BATCH_SIZ: 3\n")
    with pytest.raises(ConfigError, match=r"TRAIN\.BATCH_SIZ.*bad\.yaml.*TRAIN\.BATCH_SIZE"):
        load_config(str(path))


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"TRAIN\.BATCH_SIZE expects int"):
        load_config(None, ["TRAIN.BATCH_SIZE", "abc"])
    with pytest.raises(ConfigError, match="LOG.TENSORBOARD"):
        load_config(None, ["LOG.TENSORBOARD", "1"])


def test_odd_override_list_fails():
    with pytest.raises(ConfigError, match="KEY VALUE"):
        load_config(None, ["SOLVER.BASE_LR"])


def test_coercions():
    assert coerce_value("K", 1, 0.5) == 1.0 and isinstance(coerce_value("K", 1, 0.5), float)
    assert coerce_value("K", "1e-4", 0.5) == 1e-4  # YAML reads 1e-4 as a string
    assert coerce_value("K", (1, 2), [0]) == [1, 2]
    assert coerce_value("K", "x", None) == "x"
    with pytest.raises(ConfigError):
        coerce_value("K", 1.5, 3)


def test_base_inheritance_and_override_order(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_EPOCH: 7\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.2\n")
    cfg = load_config(str(tmp_path / "child.yaml"), ["SOLVER.MAX_EPOCH", "9"])
    assert cfg.SOLVER.BASE_LR == 0.2 and cfg.SOLVER.MAX_EPOCH == 9
    assert cfg.is_frozen()


def test_merge_checked_sets_nested_value():
    cfg = get_cfg()
    merge_checked(cfg, {"MODEL.DEPTH": [1, 1, 2]}, source="test")
    assert cfg.MODEL.DEPTH == [1, 1, 2]


def test_save_config_round_trips(tmp_path):
    cfg = load_config(None, ["SOLVER.BASE_LR", "0.25"])
    path = save_config(cfg, str(tmp_path / "run"))
    assert yaml.safe_load(Path(path).read_text())["SOLVER"]["BASE_LR"] == 0.25
    assert load_config(path).SOLVER.BASE_LR == 0.25


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(path):
    cfg = load_config(str(path))
    assert cfg.TRAIN.BATCH_SIZE > 0


def test_paper_recipes_hold_paper_settings():
    image_pt = load_config(str(REPO / "configs/image/convmae_base_pretrain.yaml"))
    assert (image_pt.SOLVER.BASE_LR, image_pt.TRAIN.BATCH_SIZE, image_pt.SOLVER.MAX_EPOCH) == (1.5e-4, 1024, 1600)
    assert image_pt.MAE.MASK_RATIO == 0.75
    image_ft = load_config(str(REPO / "configs/image/convvit_base_finetune.yaml"))
    assert image_ft.SOLVER.LAYER_DECAY == 0.65 and image_ft.MODEL.DROP_PATH_RATE == 0.1
    linprobe = load_config(str(REPO / "configs/image/convvit_base_linprobe.yaml"))
    assert linprobe.SOLVER.OPTIMIZING_METHOD == "lars" and linprobe.TRAIN.BATCH_SIZE == 16384
    k400 = load_config(str(REPO / "configs/video/k400_pretrain_msd.yaml"))
    assert k400.MAE.MASK_RATIO == 0.9 and k400.MODEL.MULTI_SCALE_DECODER and k400.SOLVER.MAX_EPOCH == 800
    assert not load_config(str(REPO / "configs/video/ssv2_pretrain_nomsd.yaml")).MODEL.MULTI_SCALE_DECODER
    ssv2_ft = load_config(str(REPO / "configs/video/ssv2_finetune_msd.yaml"))
    assert (ssv2_ft.TEST.NUM_ENSEMBLE_VIEWS, ssv2_ft.TEST.NUM_SPATIAL_CROPS, ssv2_ft.DATA.RANDOM_FLIP) == (2, 3, False)
