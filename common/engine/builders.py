"""From a resolved config to the objects of a run: model keyword arguments, models, data loaders.

The config is read here and only here; models and datasets get explicit arguments.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from fvcore.common.config import CfgNode
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset

from common.data.read_ahead import LookaheadBatchSampler
from common.engine.distributed import DistInfo
from common.engine.preemption import ignore_in_workers
from common.engine.sampling import SeededDataset, ShardSampler, TrainSampler
from common.modality import modality_of_config
from common.models import create_model

PROBE_BN_EPS = 1e-6
PROBE_HEAD_INIT_STD = 0.01


def model_kwargs(cfg: CfgNode, *, pretraining: bool, crop_size: int) -> Dict[str, Any]:
    """``create_model`` overrides for ``cfg.MODEL.NAME``: geometry from ``DATA``, sizes from ``MODEL``."""
    kwargs: Dict[str, Any] = {
        "img_size": crop_size,
        "drop_path_rate": cfg.MODEL.DROP_PATH_RATE,
        "use_checkpoint": cfg.MODEL.USE_CHECKPOINT,
    }
    kwargs.update(modality_of_config(cfg).model_kwargs(cfg))
    architecture = {
        "embed_dim": cfg.MODEL.EMBED_DIM,
        "depth": cfg.MODEL.DEPTH,
        "mlp_ratio": cfg.MODEL.MLP_RATIO,
        "num_heads": cfg.MODEL.NUM_HEADS,
    }
    if pretraining:
        architecture.update(
            decoder_embed_dim=cfg.MODEL.DECODER_EMBED_DIM,
            decoder_depth=cfg.MODEL.DECODER_DEPTH,
            decoder_num_heads=cfg.MODEL.DECODER_NUM_HEADS,
        )
        kwargs.update(mask_ratio=cfg.MAE.MASK_RATIO, norm_pix_loss=cfg.MAE.NORM_PIX_LOSS,
                      multi_scale_decoder=cfg.MODEL.MULTI_SCALE_DECODER, sparse_conv=cfg.MODEL.SPARSE_CONV)
    else:
        kwargs.update(num_classes=cfg.MODEL.NUM_CLASSES, global_pool=cfg.MODEL.GLOBAL_POOL)
    kwargs.update({k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in architecture.items() if v})
    return kwargs


def build_model(cfg: CfgNode, *, pretraining: bool, crop_size: int) -> nn.Module:
    """The registered model ``cfg.MODEL.NAME`` with the config's overrides."""
    return create_model(cfg.MODEL.NAME, **model_kwargs(cfg, pretraining=pretraining, crop_size=crop_size))


def attach_probe_head(model: nn.Module) -> nn.Module:
    """Linear probe: ``head`` becomes BatchNorm1d (no affine) + the Linear head; all else frozen."""
    head: nn.Linear = model.head
    nn.init.trunc_normal_(head.weight, std=PROBE_HEAD_INIT_STD)
    nn.init.zeros_(head.bias)
    model.head = nn.Sequential(nn.BatchNorm1d(head.in_features, affine=False, eps=PROBE_BN_EPS), head)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("head.")
    return model


def has_probe_head(state_dict: Dict[str, torch.Tensor]) -> bool:
    """True for the weights of a linear-probe model (``head.1.weight``)."""
    return "head.1.weight" in state_dict


def with_classifier_weights(model: nn.Module, weights: Dict[str, torch.Tensor]) -> nn.Module:
    """``model`` (a classifier) holding all of ``weights``, strictly: a linear probe's weights get
    the probe head first. Returns the model (the probe-head one if attached)."""
    if has_probe_head(weights):
        model = attach_probe_head(model)
    model.load_state_dict(weights, strict=True)
    return model


def per_rank_batch(global_batch: int, dist: DistInfo, key: str) -> int:
    """``global_batch / world_size``; ValueError naming ``key`` if it does not divide."""
    if global_batch % dist.world_size or global_batch < dist.world_size:
        raise ValueError(f"{key} = {global_batch} must be a positive multiple of the {dist.world_size} ranks")
    return global_batch // dist.world_size


def clips_per_step(cfg: CfgNode) -> int:
    """Samples per optimizer step over all ranks (the lr scaling batch): TRAIN.BATCH_SIZE items x
    TRAIN.ACCUM_ITER x DATA.REPEATED_SAMPLING clips per item."""
    return cfg.TRAIN.BATCH_SIZE * cfg.TRAIN.ACCUM_ITER * cfg.DATA.REPEATED_SAMPLING


def build_train_loader(cfg: CfgNode, dataset: Dataset, dist: DistInfo) -> DataLoader:
    """Loader over ``SeededDataset(dataset)`` with an epoch-seeded ``TrainSampler`` (``train_sampler(loader)``)."""
    sampler = TrainSampler(len(dataset), rank=dist.rank, world_size=dist.world_size,
                           seed=cfg.RNG_SEED, repeats=cfg.TRAIN.REPEATED_AUG)
    return _loader(cfg, SeededDataset(dataset), sampler,
                   per_rank_batch(cfg.TRAIN.BATCH_SIZE, dist, "TRAIN.BATCH_SIZE"), drop_last=True)


def build_eval_loader(cfg: CfgNode, dataset: Dataset, dist: DistInfo) -> DataLoader:
    """Loader over this rank's unpadded shard of ``dataset`` (every sample on exactly one rank)."""
    sampler = ShardSampler(len(dataset), rank=dist.rank, world_size=dist.world_size)
    batch = max(cfg.TEST.BATCH_SIZE // dist.world_size, 1)
    return _loader(cfg, dataset, sampler, batch, drop_last=False)


def train_sampler(loader: DataLoader) -> TrainSampler:
    """The ``TrainSampler`` of a ``build_train_loader`` loader (inside its batch sampler)."""
    return loader.batch_sampler.sampler


def _loader(cfg: CfgNode, dataset: Dataset, sampler, batch_size: int, *, drop_last: bool) -> DataLoader:
    return make_loader(dataset, sampler, batch_size, workers=cfg.DATA_LOADER.NUM_WORKERS, drop_last=drop_last,
                       pin_memory=cfg.DATA_LOADER.PIN_MEMORY, seed=cfg.RNG_SEED)


def make_loader(dataset: Dataset, sampler, batch_size: int, *, workers: int, drop_last: bool,
                pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """The engine's DataLoader: batches carry read-ahead hints (``LookaheadBatchSampler``) for
    two-phase datasets; workers persist across epochs; ``seed`` seeds the workers' base seed;
    workers ignore the preemption signals and Ctrl-C meant for the main process."""
    return DataLoader(
        dataset,
        batch_sampler=LookaheadBatchSampler(BatchSampler(sampler, batch_size, drop_last), workers),
        num_workers=workers,
        collate_fn=getattr(dataset, "collate_fn", None),
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=ignore_in_workers,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
    )
