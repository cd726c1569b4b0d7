"""A ``torch.compile`` backend for engine tests: ``aot_eager`` that counts the graphs it compiles.

``TRAIN.COMPILE_BACKEND aot_eager_counting`` (after ``register_counting_backend()``) runs the
model through dynamo and AOTAutograd like inductor, without C++ compilation; ``COMPILED_GRAPHS``
lists the number of nodes of every graph compiled in this process.
"""
from typing import List

import torch
from torch._dynamo import register_backend
from torch._dynamo.backends.registry import lookup_backend

COUNTING_BACKEND = "aot_eager_counting"
COMPILED_GRAPHS: List[int] = []


def register_counting_backend() -> None:
    if COUNTING_BACKEND in torch._dynamo.list_backends(exclude_tags=()):
        return

    def aot_eager_counting(graph: torch.fx.GraphModule, example_inputs, **kwargs):
        COMPILED_GRAPHS.append(len(graph.graph.nodes))
        return lookup_backend("aot_eager")(graph, example_inputs, **kwargs)
    register_backend(aot_eager_counting, name=COUNTING_BACKEND)
