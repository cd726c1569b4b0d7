import pytest
from fvcore.common.config import CfgNode

import common.data.registry as registry
from common.data import add_data_config, build_dataset, get_dataset_builder, register_dataset, registered_datasets


def test_register_refuses_duplicates_and_unknown_names_list_the_known(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", {})
    builder = register_dataset("toy")(lambda cfg, mode: [mode])
    assert get_dataset_builder("toy") is builder and registered_datasets() == ["toy"]
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("toy")(lambda cfg, mode: None)
    with pytest.raises(KeyError, match="toy"):
        get_dataset_builder("nope")


def test_build_dataset_imports_the_modality_packages_and_checks_the_mode():
    cfg = CfgNode()
    add_data_config(cfg)
    with pytest.raises(ValueError, match="mode"):
        build_dataset(cfg, "training")
    cfg.DATA.DATASET = "nope"
    with pytest.raises(KeyError):
        build_dataset(cfg, "val")
    assert {"kinetics", "ssv2", "imagenet"} <= set(registered_datasets())
