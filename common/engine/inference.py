"""Use a trained model on your own files: load a run, classify files, name the classes.

``load_run`` rebuilds the model of a run folder (its ``config.yaml`` and ``checkpoint-last.pth``,
or a given checkpoint) or of a bare checkpoint plus a model name (e.g. an official ConvMAE
file), in eval mode, with the preprocessing it expects. A classifier checkpoint gives the
classifier; a pretraining checkpoint gives its encoder (``LoadedModel.pretraining``), which
``common.engine.features`` turns into features. ``predict_files`` classifies files with the test
job's dataset, loader and view averaging (multi-view for videos), sharded over ranks.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from fvcore.common.config import CfgNode
from torch import nn

from common.checkpoint import (PRETRAIN_ONLY_PREFIXES, CheckpointError, classifier_state_from_pretraining,
                               model_state_dict, safe_load)
from common.config import RESOLVED_CONFIG_NAME, config_from_yaml, get_cfg, merge_checked, parse_overrides
from common.data import batch_inputs
from common.data.class_names import ClassNamesError, read_class_names
from common.engine.builders import attach_probe_head, build_eval_loader, build_model, has_probe_head
from common.engine.checkpointing import find_resume_checkpoint
from common.engine.distributed import DistInfo, all_gather_objects
from common.engine.evaluation import batch_scores
from common.engine.precision import resolve_precision
from common.engine.progress import logged_progress
from common.engine.reconstruct import DECODER_KEY
from common.errors import DataNotFoundError, UserError
from common.modality import INDEX_KEY, Modality, modality_of_config

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
CLASS_IDS_FILE = "classids.json"  # PySlowFast's {"class name": id} in DATA.PATH_TO_DATA_DIR
Overrides = Union[Mapping[str, Any], Sequence[str]]


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input (from the run's config).

    ``crop_size``: the square side of a view (``DATA.TEST_CROP_SIZE``); ``num_frames`` and
    ``sampling_rate``: frames per clip and source frames between them (None for images);
    ``mean``/``std``: per-channel normalisation of [0, 1] pixels; ``views``: (temporal clips,
    spatial crops) of the multi-view test, (1, 1) for images.
    """

    crop_size: int
    num_frames: Optional[int]
    sampling_rate: Optional[int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    views: Tuple[int, int]


@dataclass
class LoadedModel:
    """A model ready for inference: ``model`` (eval mode, on ``device``), its frozen ``cfg``,
    ``modality``, ``preprocessing``, ``class_names`` (index = class id; None when unknown),
    the ``checkpoint`` it was read from, and ``pretraining``: True for a pretraining checkpoint
    (an encoder without classifier head: features only)."""

    model: nn.Module
    cfg: CfgNode
    modality: Modality
    preprocessing: Preprocessing
    checkpoint: str
    pretraining: bool
    device: torch.device
    class_names: Optional[List[str]] = field(default=None)

    def class_name(self, class_id: int) -> str:
        """The name of ``class_id``, or "" when the names are unknown."""
        names = self.class_names
        return names[class_id] if names and 0 <= class_id < len(names) else ""


def load_run(run_dir: Optional[PathLike] = None, *, checkpoint: Optional[PathLike] = None,
             model_name: Optional[str] = None, overrides: Overrides = (),
             device: Union[str, torch.device, None] = None) -> LoadedModel:
    """The model of a run, in eval mode, with its preprocessing and class names.

    ``run_dir``: a run's ``OUTPUT_DIR`` (its ``config.yaml``; ``checkpoint-last.pth`` unless
    ``checkpoint`` is given). Without ``run_dir``: ``checkpoint`` alone when it stores its config
    (our checkpoints do), else ``checkpoint`` plus ``model_name`` (a registered model: the
    pretraining model for a pretraining checkpoint, a classifier for a classifier one; sizes
    are the model's defaults, the class count is read from the weights). ``overrides``: config
    keys to change, ``{"TEST.NUM_ENSEMBLE_VIEWS": 1}`` or ``["KEY", "VALUE", ...]`` (e.g.
    ``DATA.NUM_FRAMES`` for longer clips: the position embedding is interpolated).
    ``device``: default CUDA when available. Checkpoints are read with ``safe_load``.
    """
    path, state = _checkpoint_of(run_dir, checkpoint)
    cfg = _config_of(run_dir, path, state, model_name)
    weights = model_state_dict(state)
    pretraining = DECODER_KEY in weights
    bare = run_dir is None and not state.get("cfg")
    cfg = _with_overrides(cfg, _inferred_keys(weights) if bare and not pretraining else {}, overrides)
    model = _model_with_weights(cfg, weights, pretraining, path)
    default = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device if device is not None else default)
    modality = modality_of_config(cfg)
    loaded = LoadedModel(model=model.to(target).eval(), cfg=cfg, modality=modality,
                         preprocessing=preprocessing_of(cfg, modality), checkpoint=str(path),
                         pretraining=pretraining, device=target, class_names=class_names_of_config(cfg))
    logger.info("loaded %s (%s, %s) from %s", cfg.MODEL.NAME, modality.name,
                "pretraining encoder" if pretraining else f"{cfg.MODEL.NUM_CLASSES} classes", path)
    return loaded


def _checkpoint_of(run_dir: Optional[PathLike], checkpoint: Optional[PathLike]) -> Tuple[Path, Dict[str, Any]]:
    if checkpoint is None:
        if run_dir is None:
            raise UserError("load_run needs a run folder or a checkpoint file")
        if not Path(run_dir).is_dir():
            raise DataNotFoundError(f"run folder {run_dir} does not exist")
        found = find_resume_checkpoint(str(run_dir))
        if found is None:
            raise DataNotFoundError(f"no checkpoint-last.pth in run folder {run_dir}: pass checkpoint=FILE")
        checkpoint = found
    return Path(checkpoint), safe_load(checkpoint)


def _config_of(run_dir: Optional[PathLike], path: Path, state: Dict[str, Any], model_name: Optional[str]) -> CfgNode:
    """The run's ``config.yaml``, else the config the checkpoint stores, else defaults + ``model_name``."""
    if run_dir is not None:
        config_file = Path(run_dir) / RESOLVED_CONFIG_NAME
        if config_file.is_file():
            cfg = config_from_yaml(config_file.read_text(), str(config_file))
        elif state.get("cfg"):
            cfg = config_from_yaml(state["cfg"], f"the config stored in {path}")
        else:
            raise DataNotFoundError(f"run folder {run_dir} has no {RESOLVED_CONFIG_NAME} and {path} stores no config")
    elif state.get("cfg"):
        cfg = config_from_yaml(state["cfg"], f"the config stored in {path}")
    elif model_name is None:
        raise CheckpointError(f"{path} stores no config: pass model_name (a registered model, e.g. "
                              f"convvit_base_patch16 for an official ConvMAE classifier)")
    else:
        cfg = get_cfg()
    if model_name is not None:
        cfg = _with_overrides(cfg, {"MODEL.NAME": model_name}, ())
    return cfg


def _inferred_keys(weights: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """A bare classifier checkpoint's class count and pooling, read from its weights."""
    keys: Dict[str, Any] = {"MODEL.GLOBAL_POOL": "fc_norm.weight" in weights}
    head = weights.get("head.weight", weights.get("head.1.weight"))
    if head is not None:
        keys["MODEL.NUM_CLASSES"] = int(head.shape[0])
    return keys


def _with_overrides(cfg: CfgNode, inferred: Mapping[str, Any], overrides: Overrides) -> CfgNode:
    pairs = {**inferred, **(overrides if isinstance(overrides, Mapping) else parse_overrides(overrides))}
    if not pairs:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    merge_checked(cfg, pairs, source="load_run overrides")
    cfg.freeze()
    return cfg


def _model_with_weights(cfg: CfgNode, weights: Dict[str, torch.Tensor], pretraining: bool, path: Path) -> nn.Module:
    """The run's model at ``DATA.TEST_CROP_SIZE`` with ``weights``; a pretraining model keeps its
    encoder (decoder weights are not loaded), the position embedding follows the config's grid."""
    try:
        model = build_model(cfg, pretraining=pretraining, crop_size=cfg.DATA.TEST_CROP_SIZE)
    except TypeError as error:
        kind = "pretraining" if pretraining else "classifier"
        raise CheckpointError(f"{path} is a {kind} checkpoint but model {cfg.MODEL.NAME} is not a {kind} model "
                              f"({error})") from None
    if not pretraining and has_probe_head(weights):
        model = attach_probe_head(model)
    state = classifier_state_from_pretraining(weights, model) if "pos_embed" in weights else dict(weights)
    if pretraining:
        state = {k: v for k, v in state.items() if k in model.state_dict()}
    own = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{path} does not fit {cfg.MODEL.NAME} with this config: " + "; ".join(wrong[:5]))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (pretraining and k.startswith(PRETRAIN_ONLY_PREFIXES))]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{path} does not fit {cfg.MODEL.NAME}: missing keys {missing[:8]}, unexpected keys "
                              f"{list(result.unexpected_keys)[:8]}")
    return model


def preprocessing_of(cfg: CfgNode, modality: Modality) -> Preprocessing:
    """The input a model of ``cfg`` expects."""
    data = cfg.DATA
    timed = len(modality.geometry()["input_size"]) == 3
    return Preprocessing(
        crop_size=data.TEST_CROP_SIZE,
        num_frames=data.NUM_FRAMES if timed else None,
        sampling_rate=data.SAMPLING_RATE if timed else None,
        mean=tuple(data.MEAN),
        std=tuple(data.STD),
        views=(cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) if timed else (1, 1),
    )


def class_names_file(cfg: CfgNode) -> Optional[str]:
    """``DATA.CLASS_NAMES_FILE``, else ``DATA.PATH_TO_DATA_DIR/classids.json`` if it exists."""
    if cfg.DATA.CLASS_NAMES_FILE:
        return cfg.DATA.CLASS_NAMES_FILE
    default = os.path.join(cfg.DATA.PATH_TO_DATA_DIR, CLASS_IDS_FILE)
    return default if cfg.DATA.PATH_TO_DATA_DIR and os.path.isfile(default) else None


def class_names_of_config(cfg: CfgNode) -> Optional[List[str]]:
    """The class names of a run (index = class id), or None when it names no file or the file
    does not fit (not a ``{"class name": id}`` json, or not ``MODEL.NUM_CLASSES`` names: logged
    as a warning naming the file, since names are a convenience, never a reason to fail)."""
    path = class_names_file(cfg)
    if path is None:
        return None
    try:
        names = read_class_names(path)
    except ClassNamesError as error:
        logger.warning("class names not used: %s", error)
        return None
    if len(names) != cfg.MODEL.NUM_CLASSES:
        logger.warning("class names not used: %s names %d classes, MODEL.NUM_CLASSES is %d", path, len(names),
                       cfg.MODEL.NUM_CLASSES)
        return None
    return names


@dataclass(frozen=True)
class Prediction:
    """One file's classification: ``topk`` = [{"id", "name", "score"}] by decreasing softmax
    score (averaged over ``num_views`` views); ``error`` "" or why the file could not be read
    (then ``topk`` is empty and ``num_views`` 0)."""

    index: int
    path: str
    topk: List[Dict[str, Any]]
    num_views: int
    error: str

    def as_json(self) -> Dict[str, Any]:
        """The JSON-lines record: ``path``, ``topk``, ``num_views``, ``error``."""
        return {"path": self.path, "topk": self.topk, "num_views": self.num_views, "error": self.error}


def files_loader(loaded: LoadedModel, paths: Sequence[PathLike], dist: DistInfo):
    """The test job's loader (``build_eval_loader``: this rank's shard, ``TEST.BATCH_SIZE``) over
    the modality's test-mode dataset of ``paths``."""
    if loaded.modality.file_dataset is None:
        raise UserError(f"the {loaded.modality.name} modality offers no dataset over files")
    dataset = loaded.modality.file_dataset(loaded.cfg, [str(p) for p in paths])
    return build_eval_loader(loaded.cfg, dataset, dist)


def local_dist(loaded: LoadedModel) -> DistInfo:
    """A single-process ``DistInfo`` on the model's device."""
    return DistInfo(rank=0, world_size=1, local_rank=0, device=loaded.device)


@torch.no_grad()
def predict_files(loaded: LoadedModel, paths: Sequence[PathLike], *, topk: int = 5,
                  dist: Optional[DistInfo] = None) -> List[Prediction]:
    """Classify ``paths`` (files of the model's modality) as the test job does: all test views of
    a video from one decode, softmax scores averaged over the views. Under ``torchrun`` (``dist``
    with several ranks) each rank reads its shard and every rank gets all predictions, in the
    order of ``paths``. A file that cannot be read has its ``error`` set; the others go on. At most
    ``TEST.CLIPS_PER_FORWARD`` views go through the model at once, as in the test job."""
    if loaded.pretraining:
        raise UserError(f"{loaded.checkpoint} is a pretraining checkpoint: it has no classifier "
                        "(extract features with it, or finetune it first)")
    dist = dist or local_dist(loaded)
    precision = resolve_precision(loaded.cfg.TRAIN.PRECISION, loaded.device)
    local: List[Prediction] = []
    for batch in logged_progress(files_loader(loaded, paths, dist), "predict"):
        scores, views = batch_scores(loaded.model, batch, inputs_of=batch_inputs, device=loaded.device,
                                     input_ndim=loaded.modality.input_ndim, precision=precision,
                                     clips_per_forward=loaded.cfg.TEST.CLIPS_PER_FORWARD)
        local.extend(_predictions(loaded, batch, scores.cpu(), views, topk))
    merged = [p for part in all_gather_objects(local) for p in part]
    return sorted(merged, key=lambda p: p.index)


def _predictions(loaded: LoadedModel, batch: Dict[str, Any], scores: torch.Tensor, views: int,
                 topk: int) -> List[Prediction]:
    top = scores.topk(min(topk, scores.shape[1]), dim=1)
    out = []
    for i, (values, ids) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
        error = batch["error"][i]
        best = [] if error else [{"id": c, "name": loaded.class_name(c), "score": s} for c, s in zip(ids, values)]
        out.append(Prediction(index=int(batch[INDEX_KEY][i]), path=str(batch["path"][i]), topk=best,
                              num_views=0 if error else views, error=error))
    return out


def collect_inputs(inputs: Sequence[PathLike], modality: Modality) -> List[Tuple[str, str]]:
    """(path, relative path) of every input file: a folder gives the files ``modality`` reads
    under it (recursively, sorted), relative to the folder; a file is taken as given, relative
    path its name; each file once. DataNotFoundError for a missing input or none found;
    UserError when two inputs would share a relative path (their outputs would collide)."""
    files: List[Tuple[str, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and modality.reads(p))
            files.extend((str(p), str(p.relative_to(item))) for p in found)
        elif item.is_file():
            files.append((str(item), item.name))
        else:
            raise DataNotFoundError(f"input {item} does not exist")
    if not files:
        raise DataNotFoundError(f"no {modality.name} files ({', '.join(modality.file_suffixes)}) in "
                                f"{list(map(str, inputs))}")
    first: Dict[str, str] = {}
    unique = []
    for path, relative in files:
        if first.setdefault(relative, path) != path:
            raise UserError(f"inputs {first[relative]} and {path} have the same relative path {relative}: "
                            "give them in separate runs or with different output folders")
        if (path, relative) not in unique:
            unique.append((path, relative))
    return unique


def read_input_list(list_file: PathLike) -> List[str]:
    """The paths of a list file: the first field of every line ("path", "path label" or
    "path,label"); relative paths are relative to the list's folder."""
    folder = Path(list_file).resolve().parent
    paths = []
    for line in Path(list_file).read_text().splitlines():
        line = line.strip()
        if line:
            first = line.split(",")[0].split()[0]
            paths.append(str(first if os.path.isabs(first) else folder / first))
    if not paths:
        raise DataNotFoundError(f"{list_file} lists no files")
    return paths
