"""Export classifiers and the ``features_only`` backbone to ``torch.export`` (.pt2) or ONNX.

Both formats get a dynamic batch dimension (the other dims are fixed by the model's input
size); ONNX goes through ``torch.onnx.export(..., dynamo=True)`` and runs with onnxruntime
(the ``export`` extra of setup.py).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List, Sequence, Union

import torch
from torch import nn

EXPORT_FORMATS = ("onnx", "pt2")
# torch.export specialises dims of size 1, so the traced example has 2 samples.
EXAMPLE_BATCH = 2
MAX_BATCH = 4096
INPUT_NAME = "input"

Outputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def input_shape(model: nn.Module, batch: int) -> tuple:
    """(batch, C, *input_size) of a classifier or of a ``features_only`` wrapper's model."""
    inner = getattr(model, "model", model)
    return (batch, inner.in_chans, *inner.input_size)


def _as_list(outputs: Outputs) -> List[torch.Tensor]:
    return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)


def _replace_into(folder: Path, output: Path) -> None:
    """Move every file of ``folder`` next to ``output`` (same names), each by an atomic rename."""
    for path in sorted(folder.iterdir()):
        os.replace(path, output.parent / path.name)


def export_model(model: nn.Module, fmt: str, output: Union[str, Path]) -> Path:
    """Write ``model`` (eval mode) to ``output`` in ``fmt`` ("onnx" | "pt2"), batch dim dynamic.

    The files are written in a temporary folder next to ``output`` and renamed into place, so
    an interrupted export never leaves a partial file under the final name (an ONNX model
    over 2 GB keeps its weights in ``output.data`` beside it).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = (torch.randn(input_shape(model, EXAMPLE_BATCH)),)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        target = staging / output.name
        with torch.no_grad():
            if fmt == "pt2":
                torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), target)
            else:
                torch.onnx.export(model, example, target, dynamo=True, dynamic_shapes=dynamic,
                                  input_names=[INPUT_NAME], external_data=_over_2gb(model), verbose=False)
        _replace_into(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _over_2gb(model: nn.Module) -> bool:
    """ONNX's protobuf limit: larger models keep their weights in a separate file."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) >= 2**31


def load_exported(path: Union[str, Path]) -> Callable[[torch.Tensor], List[torch.Tensor]]:
    """A function running an exported file (format from its suffix: .onnx or .pt2) on an input."""
    path = Path(path)
    if path.suffix == ".pt2":
        module = torch.export.load(path).module()

        def run_pt2(x: torch.Tensor) -> List[torch.Tensor]:
            with torch.no_grad():
                return _as_list(module(x))

        return run_pt2
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: [torch.from_numpy(o) for o in session.run(None, {INPUT_NAME: x.numpy()})]
    raise ValueError(f"{path}: expected a .onnx or .pt2 file")


def max_difference(model: nn.Module, run: Callable[[torch.Tensor], List[torch.Tensor]], batch: int) -> float:
    """Largest |exported - eager| over all outputs on one random input of ``batch`` samples;
    ``run`` from ``load_exported``. Raises if the output shapes differ."""
    x = torch.randn(input_shape(model, batch))
    with torch.no_grad():
        eager = _as_list(model.eval()(x))
    exported = run(x)
    shapes, expected = [tuple(o.shape) for o in exported], [tuple(o.shape) for o in eager]
    if shapes != expected:
        raise RuntimeError(f"exported model gives output shapes {shapes}, the eager model {expected}")
    return max(float((a - b).abs().max()) for a, b in zip(exported, eager))
