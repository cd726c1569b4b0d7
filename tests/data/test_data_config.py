from fvcore.common.config import CfgNode

from common.data import add_data_config


def test_adds_pyslowfast_named_keys_with_defaults():
    cfg = CfgNode()
    add_data_config(cfg)
    assert cfg.DATA.NUM_FRAMES == 16 and cfg.DATA.SAMPLING_RATE == 4
    assert cfg.DATA.DECODING_BACKEND == "decord" and cfg.DATA.REPEATED_SAMPLING == 1
    assert (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (5, 3)
    assert (cfg.MIXUP.ALPHA, cfg.MIXUP.CUTMIX_ALPHA, cfg.MIXUP.LABEL_SMOOTH_VALUE) == (0.8, 1.0, 0.1)
    assert cfg.DATA.MULTISCALE_CROP_SCALES == [1.0, 0.875, 0.75, 0.66]
    assert set(cfg) == {"DATA", "TEST", "AUG", "MIXUP", "DATA_LOADER"}


def test_keeps_existing_nodes_and_merges_overrides():
    cfg = CfgNode({"TEST": CfgNode({"BATCH_SIZE": 8})})
    add_data_config(cfg)
    assert cfg.TEST.BATCH_SIZE == 8 and cfg.TEST.NUM_SPATIAL_CROPS == 3
    cfg.merge_from_list(["DATA.DATASET", "ssv2", "DATA.SAMPLING_RATE", "2", "DATA.RANDOM_FLIP", "False"])
    assert (cfg.DATA.DATASET, cfg.DATA.SAMPLING_RATE, cfg.DATA.RANDOM_FLIP) == ("ssv2", 2, False)
