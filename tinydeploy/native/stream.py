"""Row-streamed chains of ops: run several ops one output row at a time, so that the tensors
between them never exist in full.

Why: an arena must hold, at the busiest op, every tensor alive there. In a ResNet block
(conv -> conv -> add with the block's input) that is the block input, the first conv's output
and the second's: three whole activations. Run row by row, a tensor that only feeds the next ops
of the chain needs just the rows their windows still read - a ring of a few rows - and the
chain's output may overwrite an input as soon as no window reads those rows any more.

A stream is a run of consecutive ops (the *stages*), each able to compute one output row from
the rows of its inputs: CONV_2D and DEPTHWISE_CONV_2D (batch 1, NHWC) and same-shape ADD. The
tensors the stages produce are *internal* (read only by later stages, not model outputs) except
the last stage's, the stream's *output*. Everything else the stages read is *external* (whole
tensors made before the stream). The order of rows is fixed at build time by simulating demand:
the last stage's rows in order, each computing first the input rows its window needs, and so on
up the chain. The same simulation sizes each internal tensor's ring (the most rows that are made
and still to be read at any moment) and the gap the output must keep before an external input it
overwrites. The device runs the recorded schedule (firmware/native/td_stream.c).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydeploy.native import qparams

STREAMABLE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "ADD"})
ROW_FUNCTIONS = {"CONV_2D": "td_conv_row_s8", "DEPTHWISE_CONV_2D": "td_depthwise_row_s8",
                 "ADD": "td_add_row_s8"}
MAX_STAGES = 16   # TD_STREAM_MAX_STAGES


@dataclass
class Stream:
    """A chain of ops run row by row (see the module docstring)."""

    ops: list[int]                                       # the stages: consecutive op indices
    output: int                                          # the last stage's output tensor
    internal: dict[int, int] = field(default_factory=dict)   # tensor -> rows of its ring
    external: list[int] = field(default_factory=list)    # tensors read, made before the stream
    schedule: list[int] = field(default_factory=list)    # per step: the stage computing a row
    gaps: dict[int, int] = field(default_factory=dict)   # external -> bytes the output must
    #                                                      start before it to run over it

    @property
    def first(self) -> int:
        return self.ops[0]


def row_bytes(t) -> int:
    """Bytes of one row of an NHWC tensor (width * channels)."""
    return int(t.shape[2]) * int(t.shape[3])


def _is_image(t) -> bool:
    return t.data is None and len(t.shape) == 4 and t.shape[0] == 1


def streamable(graph, op) -> bool:
    """Whether the op can be a stage: its kernel computes one output row from input rows."""
    if op.opcode not in STREAMABLE or not op.outputs:
        return False
    out = graph.tensors[op.outputs[0]]
    if not _is_image(out):
        return False
    if op.opcode == "ADD":
        ins = [graph.tensors[i] for i in op.inputs[:2]]
        return all(_is_image(t) and tuple(t.shape) == tuple(out.shape) for t in ins)
    return _is_image(graph.tensors[op.inputs[0]])


def reads(graph, op, row: int) -> list[tuple[int, int, int]]:
    """The input rows output row `row` of the op reads: (tensor, first, last), inclusive; a
    window lying wholly in the padding reads nothing (first > last)."""
    if op.opcode == "ADD":
        return [(i, row, row) for i in op.inputs[:2]]
    inp = graph.tensors[op.inputs[0]]
    o = op.options
    k = graph.tensors[op.inputs[1]].shape[1]
    in_h = inp.shape[1]
    pad = qparams.padding_before(o["padding"], in_h, k, o["stride_h"], o["dilation_h_factor"])
    y0 = row * o["stride_h"] - pad
    last = y0 + (k - 1) * o["dilation_h_factor"]
    return [(op.inputs[0], max(y0, 0), min(last, in_h - 1))]


def make_stream(graph, op_indices: list[int], consumers: dict[int, list[int]],
                model_outputs: set[int]) -> Stream | None:
    """The stream of these consecutive ops, or None when they cannot form one."""
    if len(op_indices) < 2 or len(op_indices) > MAX_STAGES:
        return None
    stages = [graph.operators[i] for i in op_indices]
    if not all(streamable(graph, op) for op in stages):
        return None
    inside = set(op_indices)
    produced = {op.outputs[0]: k for k, op in enumerate(stages)}
    output = stages[-1].outputs[0]
    for t, k in produced.items():
        if t == output:
            if any(c in inside for c in consumers.get(t, [])):
                return None
        elif t in model_outputs or any(c not in inside for c in consumers.get(t, [])):
            return None
    stream = Stream(ops=list(op_indices), output=output)
    stream.external = sorted({t for op in stages for t, _, _ in reads(graph, op, 0)
                              if t not in produced})
    _simulate(graph, stages, produced, stream)
    return stream


def consumers_of(graph, dead: set[int]) -> dict[int, list[int]]:
    """tensor -> the (live) ops that read it."""
    found: dict[int, list[int]] = {}
    for op in graph.operators:
        if op.index not in dead:
            for idx in op.inputs:
                found.setdefault(idx, []).append(op.index)
    return found


def longest_streams(graph, dead: set[int], taken: set[int] = frozenset()) -> list[Stream]:
    """From the first op on, the longest run that can be a stream, then from the op after it,
    and so on (runs never include dead ops or ops in `taken`)."""
    consumers, outputs = consumers_of(graph, dead), set(graph.outputs)
    found, a, n = [], 0, len(graph.operators)
    while a < n:
        for b in range(min(a + MAX_STAGES, n) - 1, a, -1):
            ops = list(range(a, b + 1))
            if set(ops) & (dead | taken):
                continue
            s = make_stream(graph, ops, consumers, outputs)
            if s is not None:
                found.append(s)
                a = b
                break
        a += 1
    return found


def _simulate(graph, stages, produced: dict[int, int], stream: Stream) -> None:
    """Record the demand-driven row order; size the rings and the output's gaps from it."""
    n = len(stages)
    heights = [graph.tensors[op.outputs[0]].shape[1] for op in stages]
    done = [0] * n

    def ensure(k: int, row: int) -> None:
        while done[k] <= row:
            for t, first, last in reads(graph, stages[k], done[k]):
                if t in produced and first <= last:
                    ensure(produced[t], last)
            stream.schedule.append(k)
            done[k] += 1

    for row in range(heights[-1]):
        ensure(n - 1, row)

    # Replay: before each step, what does each tensor still have to offer to future reads?
    readers: dict[int, list[int]] = {}
    for k, op in enumerate(stages):
        for t, _, _ in reads(graph, op, 0):
            readers.setdefault(t, []).append(k)
    next_row = [0] * n

    def oldest_needed(t: int) -> int | None:
        """The lowest row of t any stage will read from now on (None: no more reads)."""
        rows = []
        for k in readers.get(t, []):
            for r in range(next_row[k], heights[k]):
                hits = [first for tt, first, last in reads(graph, stages[k], r)
                        if tt == t and first <= last]
                if hits:
                    rows.append(min(hits))
                    break
        return min(rows) if rows else None

    made = {t: 0 for t in produced}
    out_t = graph.tensors[stream.output]
    for k in stream.schedule:
        t = stages[k].outputs[0]
        if t != stream.output:
            # Writing row made[t] into slot made[t] % ring: rows from oldest_needed up to this
            # one must all be held.
            oldest = oldest_needed(t)
            span = made[t] - (oldest if oldest is not None else made[t]) + 1
            stream.internal[t] = max(stream.internal.get(t, 1), span)
        else:
            # Output row next_row[k] is written while this step (and later ones) still read the
            # external inputs from their oldest needed row on.
            written = (next_row[k] + 1) * row_bytes(out_t)
            for e in stream.external:
                oldest = oldest_needed(e)
                if oldest is not None:
                    need = written - oldest * row_bytes(graph.tensors[e])
                    stream.gaps[e] = max(stream.gaps.get(e, 0), need)
        made[t] += 1
        next_row[k] += 1
    for t in produced:
        if t != stream.output:
            stream.internal[t] = min(stream.internal.get(t, 1), graph.tensors[t].shape[1])
