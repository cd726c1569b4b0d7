"""``TRAIN.COMPILE``: ``torch.compile`` of the model's forward for training, validation, test and
``tools/predict.py`` (``--compile``, default the run's setting). Not for export, nor for features:
``common.engine.features`` calls the encoder's stages, not its compiled forward.

The model is compiled in place (``nn.Module.compile``), before any DDP wrapper, as the PyTorch
docs advise ("Where to apply torch.compile?": compile the inner module, then wrap it; dynamo's
DDPOptimizer then splits the graph at DDP's bucket boundaries so the all-reduces overlap the
backward). In place means the model object and its ``state_dict`` keys stay as they are: no
``_orig_mod.`` prefix in checkpoints, which load into an eager model; resuming loads weights
into the same parameters the compiled code reads.

The masked autoencoders compute their loss inside ``forward``, so pretraining compiles forward
+ loss (AOTAutograd traces the backward with it); with the model's own mask generator the
number of visible tokens is known without reading the mask (``num_visible``), and the sparse
path's gathers, scatters and hand-written depthwise backward compile into one graph
(tests/models/test_compile.py checks it with ``torch._dynamo.explain``). Compilation happens
once per process, input shape and train/eval mode, at the first call; every later epoch reuses
it, and inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_$USER``)
shortens the next process's compilation.

Inductor is told not to re-layout convolution inputs (``layout_optimization``): the conv stages
keep their tensors channels-last already, and inductor's own choice (channels-last buffers for
every convolution on the CPU) made the sparse path's depthwise convolutions 2.3x slower than
eager (VideoConvMAE-B stage 1, forward + backward: 225 ms compiled vs 98 ms eager, 90 ms with
the option; 2-core CPU of docs/performance.md).
"""
from __future__ import annotations

import logging
from typing import List

import torch
import torch._inductor
from torch import nn

from common.errors import UserError

logger = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "max-autotune")
INDUCTOR = "inductor"
INDUCTOR_OPTIONS = {"layout_optimization": False}  # see the module docstring


def compile_backends() -> List[str]:
    """The ``torch.compile`` backends of this torch, debugging ones (``aot_eager``) included."""
    return torch._dynamo.list_backends(exclude_tags=())


def compile_model(model: nn.Module, mode: str, *, backend: str = INDUCTOR) -> nn.Module:
    """Compile ``model``'s forward in place with ``torch.compile`` unless ``mode`` is ``off``.

    ``mode``: one of ``COMPILE_MODES`` (``default`` and ``max-autotune`` are inductor's modes);
    ``backend``: a ``torch.compile`` backend (``aot_eager`` traces as inductor does but runs
    the traced ops eagerly: a quick check of a model's graphs). Returns ``model``.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"TRAIN.COMPILE must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "off":
        return model
    if mode != "default" and backend != INDUCTOR:
        raise ValueError(f"TRAIN.COMPILE {mode} is a mode of the inductor backend, not of {backend!r}")
    if backend not in compile_backends():  # a run trained elsewhere, with a backend this process lacks
        raise UserError(f"TRAIN.COMPILE_BACKEND {backend!r} is not a torch.compile backend of this torch "
                        f"({', '.join(compile_backends())}); choose another, or do not compile (--compile off)")
    if backend == INDUCTOR:  # the mode's settings and ours (torch.compile takes a mode or options)
        model.compile(backend=backend, options={**torch._inductor.list_mode_options(mode), **INDUCTOR_OPTIONS})
    else:
        model.compile(backend=backend)
    logger.info("model forward compiled with torch.compile (backend %s, mode %s) at its first call", backend, mode)
    return model


def is_compiled(model: nn.Module) -> bool:
    """True for a model compiled in place by ``compile_model``."""
    return getattr(model, "_compiled_call_impl", None) is not None
