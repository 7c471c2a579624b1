"""The native compiler: a parsed .tflite model -> a plan of kernel calls over one static arena.

Stages: check every op is supported and lower it (ops.py), find each activation tensor's
lifetime and plan the arena (planner.py), then hand the result to the emitter (emitter.py).
Constant tensors become const C arrays (flash); everything else lives in the arena (RAM).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinydeploy import tflite
from tinydeploy.errors import ModelError, UnsupportedOpError
from tinydeploy.native import activations
from tinydeploy.native import ops as native_ops
from tinydeploy.native.planner import ArenaPlan, plan_arena

C_TYPES = {"INT8": "int8_t", "INT32": "int32_t", "FLOAT32": "float", "INT16": "int16_t",
           "UINT8": "uint8_t", "INT64": "int64_t"}


@dataclass
class TensorPlan:
    """Where one tensor lives on the device."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    nbytes: int
    place: str                 # "arena" or "flash"
    offset: int | None = None  # arena offset


@dataclass
class Program:
    """Everything the emitter needs; also what compile_model/estimate report."""

    model: tflite.Model
    steps: list[tuple[object, native_ops.Lowered]]   # (operator, lowering)
    arena: ArenaPlan
    constants: dict[int, str]                       # tensor index -> C array name
    families: list[str]                             # kernel families used, in first-use order
    tensors: dict[int, TensorPlan] = field(default_factory=dict)

    @property
    def ops_used(self) -> list[str]:
        return sorted({op.opcode for op, _ in self.steps})


def lowerings() -> dict:
    """Opcode -> lowering function, for every op the native runtime runs."""
    return {**native_ops.LOWERINGS, **activations.LOWERINGS}


def unsupported_ops(model: tflite.Model) -> list[str]:
    """Op names in the model that the native runtime has no kernel for (by name only)."""
    table = lowerings()
    return sorted({op.opcode for op in model.main.operators if op.opcode not in table})


class _Context:
    """Implements ops.Context: C expressions for tensors, registering constants as it goes."""

    def __init__(self, graph: tflite.Subgraph, arena: ArenaPlan):
        self.graph = graph
        self.arena = arena
        self.constants: dict[int, str] = {}

    def tensor(self, index: int):
        return self.graph.tensors[index]

    def ptr(self, index: int, ctype: str = "int8_t") -> str:
        t = self.graph.tensors[index]
        if t.data is not None:
            self.constants.setdefault(index, f"td_const_{index}")
            return self.constants[index]
        offset = self.arena.offsets[index]
        if ctype == "int8_t":
            return f"(TD_ARENA + {offset})"
        return f"(({ctype} *)(void *)(TD_ARENA + {offset}))"


def _lifetimes(graph: tflite.Subgraph) -> tuple[dict[int, int], dict[int, list[int]], dict[int, int]]:
    """Sizes and use times of activation tensors, and the alias map of RESHAPE-like ops."""
    n_ops = len(graph.operators)
    sizes: dict[int, int] = {}
    uses: dict[int, list[int]] = {}
    aliases: dict[int, int] = {}

    def touch(idx: int, when: int) -> None:
        t = graph.tensors[idx]
        if t.data is not None:
            return
        sizes[idx] = t.nbytes
        uses.setdefault(idx, []).append(when)

    for idx in graph.inputs:
        touch(idx, -1)
    for op in graph.operators:
        for idx in op.inputs:
            if idx >= 0:
                touch(idx, op.index)
        for idx in op.outputs:
            touch(idx, op.index)
        if op.opcode in native_ops.ALIAS_OPS and graph.tensors[op.inputs[0]].data is None:
            aliases[op.outputs[0]] = op.inputs[0]
    for idx in graph.outputs:
        touch(idx, n_ops)
    return sizes, uses, aliases


def _check_graph(model: tflite.Model) -> tflite.Subgraph:
    if len(model.subgraphs) != 1:
        raise UnsupportedOpError(
            f"the model has {len(model.subgraphs)} subgraphs; the native runtime runs one",
            "use --runtime tflm for this model")
    graph = model.main
    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedOpError(
            f"the native runtime has no kernel for {', '.join(missing)}",
            "use --runtime tflm for this model")
    for idx in list(graph.inputs) + list(graph.outputs):
        t = graph.tensors[idx]
        if t.type_name not in ("INT8", "FLOAT32"):
            raise ModelError(f"model input/output '{t.name}' is {t.type_name}",
                             "the native runtime takes int8 or float32 inputs and outputs")
        if any(d <= 0 for d in t.shape):
            raise ModelError(f"tensor '{t.name}' has a dynamic shape {t.shape}",
                             "give the model a fixed input shape before converting")
    return graph


def build_program(model: tflite.Model) -> Program:
    """Lower every op and plan the arena. Raises UnsupportedOpError naming any op it cannot run."""
    graph = _check_graph(model)
    sizes, uses, aliases = _lifetimes(graph)
    arena = plan_arena(sizes, uses, aliases)
    ctx = _Context(graph, arena)
    table = lowerings()
    steps = []
    families: list[str] = []
    for op in graph.operators:
        lowered = table[op.opcode](ctx, op)
        steps.append((op, lowered))
        if lowered.family and lowered.family not in families:
            families.append(lowered.family)
    program = Program(model=model, steps=steps, arena=arena, constants=ctx.constants,
                      families=families)
    for idx in sorted(set(sizes) | set(ctx.constants)):
        t = graph.tensors[idx]
        program.tensors[idx] = TensorPlan(
            index=idx, name=t.name, shape=tuple(t.shape), type_name=t.type_name,
            nbytes=t.nbytes, place="flash" if idx in ctx.constants else "arena",
            offset=arena.offsets.get(idx))
    return program


def constant_values(t) -> np.ndarray:
    """A constant tensor's values flattened, in the C type the kernels read."""
    if t.type_name not in C_TYPES:
        raise UnsupportedOpError(f"constant tensor '{t.name}' has type {t.type_name}",
                                 "use --runtime tflm for this model")
    return np.asarray(t.data).ravel()
