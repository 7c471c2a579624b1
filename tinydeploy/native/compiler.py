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
from tinydeploy.native import qparams, stream
from tinydeploy.native.cgen import c_array
from tinydeploy.native.planner import (ALIGNMENT, ArenaPlan, Overlap, _valid_overlaps,
                                       build_buffers, in_place_profile, live_bound, plan_arena)
from tinydeploy.native.stream import Stream

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
    place: str                 # "arena", "flash", or "ring" (a few rows, inside a stream)
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
    streams: list[Stream] = field(default_factory=list)   # ops run row by row (stream.py)
    # Lower bounds of the arena for the model's own op order, every tensor whole: the largest
    # set of tensors live during one op, and the same with outputs over dying inputs as the
    # kernels allow. (arena.in_place_bound is the latter for the order as run, streams and all.)
    live_bound: int = 0
    in_place_bound: int = 0

    @property
    def ops_used(self) -> list[str]:
        """Opcodes that run (or alias) on the device; removed shape arithmetic is not listed."""
        return sorted({op.opcode for op, lowered in self.steps
                       if lowered.family is not None or op.opcode in native_ops.ALIAS_OPS})


def lowerings() -> dict:
    """Opcode -> lowering function, for every op the native runtime runs."""
    return {**native_ops.LOWERINGS, **activations.LOWERINGS}


# Integer ops that only ever compute tensor shapes (Keras 3 emits SHAPE -> STRIDED_SLICE -> PACK
# -> RESHAPE for a Flatten/Reshape). With every shape static they are dead code on the device.
SHAPE_ARITHMETIC_OPS = frozenset({"SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "GATHER",
                                  "CAST", "SLICE", "SQUEEZE", "EXPAND_DIMS", "RESHAPE"})


def shape_only_ops(graph: tflite.Subgraph) -> set[int]:
    """Ops whose outputs feed nothing but RESHAPE's (ignored) new-shape input.

    RESHAPE takes its output shape from the flatbuffer's static output tensor, so the ops that
    compute the new-shape operand at run time can be dropped. Only integer ops are considered,
    and never one producing a model output.
    """
    consumers: dict[int, list[tuple[int, int]]] = {}
    for op in graph.operators:
        for pos, idx in enumerate(op.inputs):
            if idx >= 0:
                consumers.setdefault(idx, []).append((op.index, pos))
    outputs = set(graph.outputs)
    dead: set[int] = set()
    for op in reversed(graph.operators):  # consumers come after producers
        if op.opcode not in SHAPE_ARITHMETIC_OPS or any(o in outputs for o in op.outputs):
            continue
        if any(graph.tensors[o].type_name not in ("INT32", "INT64") for o in op.outputs):
            continue
        uses = [u for o in op.outputs for u in consumers.get(o, [])]
        if all(c in dead or (graph.operators[c].opcode == "RESHAPE" and pos == 1)
               for c, pos in uses):
            dead.add(op.index)
    return dead


def unsupported_ops(model: tflite.Model) -> list[str]:
    """Op names in the model that the native runtime has no kernel for (by name only)."""
    table = lowerings()
    dead = shape_only_ops(model.main)
    return sorted({op.opcode for op in model.main.operators
                   if op.opcode not in table and op.index not in dead})


class _Context:
    """Implements ops.Context: C expressions for tensors, registering constants as it goes."""

    def __init__(self, graph: tflite.Subgraph, arena: ArenaPlan, streams: list[Stream] = ()):
        self.graph = graph
        self.arena = arena
        self.constants: dict[int, str] = {}
        self.relaid: dict[int, str] = {}   # constants the lowering emits in its own layout
        self.rings = {t: rows for s in streams for t, rows in s.internal.items()}

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

    def scratch(self, op_index: int) -> str:
        """The op's scratch buffer (ops.scratch_bytes), or NULL when it needs none."""
        offset = self.arena.offsets.get(scratch_id(op_index))
        return "NULL" if offset is None else f"(TD_ARENA + {offset})"

    def relaid_constant(self, index: int, cname: str) -> None:
        """The lowering writes this constant itself (e.g. weights in td_gemm.h's layout)."""
        self.relaid[index] = cname

    def rows(self, index: int) -> tuple:
        """td_rows_t of an activation: all its rows, or the ring of a streamed tensor."""
        t = self.graph.tensors[index]
        row = stream.row_bytes(t) if len(t.shape) == 4 else t.nbytes
        if index in self.rings:
            return (f"(TD_ARENA + {self.arena.offsets[ring_id(index)]})", row, self.rings[index])
        if t.data is not None:  # a constant input (td_rows_t is writable; kernels only read it)
            return (f"(int8_t *){self.ptr(index)}", row, 0)
        return (self.ptr(index), row, 0)


def _lifetimes(graph: tflite.Subgraph, dead: set[int], streams: list[Stream] = ()
               ) -> tuple[dict[int, int], dict[int, list[int]], dict[int, int]]:
    """Sizes and use times of activation tensors, and the alias map of RESHAPE-like ops.

    Dead (shape-only) ops and RESHAPE's new-shape operand occupy no memory. The stages of a
    stream all run at the time of its first op; the tensors inside it become rings."""
    n_ops = len(graph.operators)
    sizes: dict[int, int] = {}
    uses: dict[int, list[int]] = {}
    aliases: dict[int, int] = {}
    when_of = {i: s.first for s in streams for i in s.ops}
    rings = {t: rows for s in streams for t, rows in s.internal.items()}

    def touch(idx: int, when: int) -> None:
        t = graph.tensors[idx]
        if t.data is not None:
            return
        if idx in rings:
            idx, nbytes = ring_id(idx), rings[idx] * stream.row_bytes(t)
        else:
            nbytes = t.nbytes
        sizes[idx] = nbytes
        uses.setdefault(idx, []).append(when)

    for idx in graph.inputs:
        touch(idx, -1)
    for op in graph.operators:
        if op.index in dead:
            continue
        when = when_of.get(op.index, op.index)
        data_inputs = op.inputs[:1] if op.opcode in native_ops.ALIAS_OPS else op.inputs
        for idx in data_inputs:
            if idx >= 0:
                touch(idx, when)
        for idx in op.outputs:
            touch(idx, when)
        if op.opcode in native_ops.ALIAS_OPS and graph.tensors[op.inputs[0]].data is None:
            aliases[op.outputs[0]] = op.inputs[0]
        need = native_ops.scratch_bytes(graph, op)
        if need:
            sizes[scratch_id(op.index)] = need
            uses[scratch_id(op.index)] = [when]
    for idx in graph.outputs:
        touch(idx, n_ops)
    return sizes, uses, aliases


def scratch_id(op_index: int) -> int:
    """The planner's key for an op's scratch buffer (tensor indices are >= 0)."""
    return -1 - op_index


def ring_id(tensor_index: int) -> int:
    """The planner's key for the ring holding a streamed tensor's rows."""
    return -1_000_000 - tensor_index


# Kernels that write output element i only after their last read of input element i (and read
# nothing before it afterwards), so the output may start exactly at the dying input.
ELEMENTWISE_IN_PLACE = frozenset({"ADD", "MUL", "LOGISTIC", "TANH", "HARD_SWISH", "QUANTIZE"})
# Kernels that stream NHWC output pixels in raster order from a sliding window.
WINDOW_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"})


def window_gap(op, inp, out, kernel_hw: tuple[int, int]) -> int:
    """Bytes an output must start before the input it overwrites, for a window op.

    The kernels produce output pixels (raster order, all their channels) two at a time: pixels
    p and p + 1 are written while windows p and p + 1 are still being read (td_conv.c,
    td_depthwise.c; the others go one by one, which this covers too). The earliest input byte
    window p reads is at L(p) = (y0 * W + x0) * C with (y0, x0) its origin clamped to the image,
    so writing is safe when out_start + min(p + 2, N) * out_c <= in_start + L(p) for every p
    (later windows may start earlier than L(p), but they also come after more output, and the
    largest shortfall over all p covers them); the gap is that largest shortfall.
    """
    _, ih, iw, ic = inp.shape
    _, oh, ow, oc = out.shape
    o = op.options
    kh, kw = kernel_hw
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    ph = qparams.padding_before(o["padding"], ih, kh, o["stride_h"], dh)
    pw = qparams.padding_before(o["padding"], iw, kw, o["stride_w"], dw)
    y0 = np.maximum(0, np.arange(oh) * o["stride_h"] - ph)[:, None]
    x0 = np.maximum(0, np.arange(ow) * o["stride_w"] - pw)[None, :]
    earliest = (y0 * iw + x0) * ic
    written = np.minimum(np.arange(oh * ow).reshape(oh, ow) + 2, oh * ow) * oc
    gap = int(max(0, (written - earliest).max()))
    return (gap + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _overlaps(graph: tflite.Subgraph, dead: set[int], streams: list[Stream] = ()
              ) -> list[Overlap]:
    """Output-over-input overlaps the kernels tolerate (see planner.Overlap); a stream's output
    may run over an external input at the gap its schedule leaves."""
    streamed = {i for s in streams for i in s.ops}
    found = [ov for ov in _op_overlaps(graph, dead) if ov.op not in streamed]
    for s in streams:
        for inp, gap in s.gaps.items():
            gap = max(gap, 0)
            found.append(Overlap(s.first, s.output, inp,
                                 (gap + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT))
    return found


_OP_OVERLAPS: dict = {}


def _op_overlaps(graph: tflite.Subgraph, dead: set[int]) -> list[Overlap]:
    """Each op's own output-over-input overlap (remembered for the graph last asked about)."""
    key = (id(graph), frozenset(dead))
    if key not in _OP_OVERLAPS:
        _OP_OVERLAPS.clear()
        _OP_OVERLAPS[key] = _find_op_overlaps(graph, dead)
    return _OP_OVERLAPS[key]


def _find_op_overlaps(graph: tflite.Subgraph, dead: set[int]) -> list[Overlap]:
    found = []
    for op in graph.operators:
        if op.index in dead or not op.outputs:
            continue
        out = graph.tensors[op.outputs[0]]
        if op.opcode in ELEMENTWISE_IN_PLACE:
            for idx in op.inputs:
                t = graph.tensors[idx] if idx >= 0 else None
                if t is not None and t.data is None and tuple(t.shape) == tuple(out.shape):
                    found.append(Overlap(op.index, op.outputs[0], idx, 0))
        elif op.opcode in WINDOW_OPS:
            inp = graph.tensors[op.inputs[0]]
            if inp.data is None and len(inp.shape) == 4 and inp.shape[0] == 1:
                if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                    kernel_hw = tuple(graph.tensors[op.inputs[1]].shape[1:3])
                else:
                    kernel_hw = (op.options["filter_height"], op.options["filter_width"])
                found.append(Overlap(op.index, op.outputs[0], op.inputs[0],
                                     window_gap(op, inp, out, kernel_hw)))
    return found


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


# Streams are looked for around the busiest op, at most this long, this many times; they are
# kept only when the planned arena is smaller with them (tests turn that off to force streams).
STREAM_LENGTH = 6
STREAM_ROUNDS = 8
STREAMS_MUST_SHRINK_THE_ARENA = True


def _plan(graph: tflite.Subgraph, dead: set[int], streams: list[Stream]) -> ArenaPlan:
    sizes, uses, aliases = _lifetimes(graph, dead, streams)
    return plan_arena(sizes, uses, aliases, _overlaps(graph, dead, streams))


def _profile(graph: tflite.Subgraph, dead: set[int], streams: list[Stream]) -> dict[int, int]:
    """Per op time: the in-place lower bound of the bytes live then (planner.in_place_profile)."""
    sizes, uses, aliases = _lifetimes(graph, dead, streams)
    by_tensor = build_buffers(sizes, uses, aliases)
    buffers = list({id(b): b for b in by_tensor.values()}.values())
    return in_place_profile(buffers, _valid_overlaps(by_tensor, _overlaps(graph, dead, streams)))


def choose_streams(graph: tflite.Subgraph, dead: set[int]) -> list[Stream]:
    """Streams that lower the arena's lower bound: repeatedly, the run of ops around the
    busiest op that, streamed, lowers the busiest moment most (stream.py says what may be one)."""
    consumers = stream.consumers_of(graph, dead)
    outputs = set(graph.outputs)
    n_ops = len(graph.operators)
    chosen: list[Stream] = []
    profile = _profile(graph, dead, chosen)
    for _ in range(STREAM_ROUNDS):
        peak_time, peak = max(profile.items(), key=lambda kv: (kv[1], -kv[0]))
        taken = {i for s in chosen for i in s.ops}
        best: tuple[int, Stream, dict] | None = None
        for a in range(max(peak_time - STREAM_LENGTH + 1, 0), peak_time + 1):
            for b in range(max(a + 1, peak_time), min(a + STREAM_LENGTH, n_ops)):
                ops = list(range(a, b + 1))
                if any(i in taken or i in dead for i in ops):
                    continue
                candidate = stream.make_stream(graph, ops, consumers, outputs)
                if candidate is None:
                    continue
                trial = _profile(graph, dead, [*chosen, candidate])
                if max(trial.values()) < peak and (best is None or
                                                   max(trial.values()) < best[0]):
                    best = (max(trial.values()), candidate, trial)
        if best is None:
            break
        chosen.append(best[1])
        profile = best[2]
    return sorted(chosen, key=lambda s: s.first)


def _unstreamed_bounds(graph: tflite.Subgraph, dead: set[int]) -> tuple[int, int]:
    sizes, uses, aliases = _lifetimes(graph, dead)
    by_tensor = build_buffers(sizes, uses, aliases)
    buffers = list({id(b): b for b in by_tensor.values()}.values())
    return live_bound(buffers), max(_profile(graph, dead, []).values(), default=0)


def build_program(model: tflite.Model) -> Program:
    """Lower every op and plan the arena. Raises UnsupportedOpError naming any op it cannot run."""
    graph = _check_graph(model)
    dead = shape_only_ops(graph)
    streams = choose_streams(graph, dead)
    arena = _plan(graph, dead, streams)
    if streams and STREAMS_MUST_SHRINK_THE_ARENA:  # a call per row: only if it pays
        plain = _plan(graph, dead, [])
        if plain.size <= arena.size:
            streams, arena = [], plain
    ctx = _Context(graph, arena, streams)
    table = lowerings()
    steps = []
    families: list[str] = []
    for op in graph.operators:
        if op.index in dead:
            steps.append((op, native_ops.Lowered(None, note="shape arithmetic, static: removed")))
            continue
        try:
            lowered = table[op.opcode](ctx, op)
        except ModelError as err:  # e.g. fixedpoint's refusals: say which op it was
            if not hasattr(err, "opcode"):
                err.opcode = op.opcode
            raise
        steps.append((op, lowered))
    for s in streams:
        _stream_calls(s, steps)
    for _, lowered in steps:
        if lowered.family and lowered.family not in families:
            families.append(lowered.family)
    if streams:
        families.append("td_stream")
    program = Program(model=model, steps=steps, arena=arena, constants=ctx.constants,
                      families=families, streams=streams)
    program.live_bound, program.in_place_bound = _unstreamed_bounds(graph, dead)
    flash = set(ctx.constants) | set(ctx.relaid)
    for idx in sorted({i for i in arena.offsets if i >= 0} | flash | set(ctx.rings)):
        t = graph.tensors[idx]
        place = "flash" if idx in flash else "ring" if idx in ctx.rings else "arena"
        program.tensors[idx] = TensorPlan(
            index=idx, name=t.name, shape=tuple(t.shape), type_name=t.type_name,
            nbytes=t.nbytes, place=place,
            offset=arena.offsets.get(ring_id(idx) if place == "ring" else idx))
    return program


def _stream_calls(s: Stream, steps: list) -> None:
    """The stream's stages keep their parameter definitions; their calls become one
    td_stream_run at the first stage, after the stage table and schedule (defined with the last
    stage, once every stage's parameters are)."""
    name = f"stream{s.first}"
    stages = [steps[i] for i in s.ops]
    table = ",\n    ".join(f"{{{stream.ROW_FUNCTIONS[op.opcode]}, &op{op.index}_params}}"
                            for op, _ in stages)
    stages[-1][1].decls.extend([
        f"static const td_stage_t {name}_stages[{len(stages)}] = {{\n    {table}\n}};\n",
        c_array("uint8_t", f"{name}_schedule", s.schedule)])
    summary = ", ".join(op.opcode for op, _ in stages)
    for k, (op, lowered) in enumerate(stages):
        lowered.call = (f"/* ops {s.ops[0]}-{s.ops[-1]} ({summary}) row by row: "
                        f"{len(s.schedule)} rows in all */\n    "
                        f"td_stream_run({name}_stages, {name}_schedule, {len(s.schedule)});"
                        if k == 0 else f"/* streamed: its rows are computed at op {s.first} */")


def constant_values(t) -> np.ndarray:
    """A constant tensor's values flattened, in the C type the kernels read."""
    if t.type_name not in C_TYPES:
        raise UnsupportedOpError(f"constant tensor '{t.name}' has type {t.type_name}",
                                 "use --runtime tflm for this model")
    return np.asarray(t.data).ravel()
