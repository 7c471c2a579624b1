"""The arena planner: tensors share bytes only when their lifetimes do not overlap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tinydeploy.native.planner import ALIGNMENT, Overlap, plan_arena


def _chain(n: int, size: int):
    """t0 -> op0 -> t1 -> op1 -> ... -> tn (t0 a model input, tn a model output)."""
    sizes = {t: size for t in range(n + 1)}
    uses = {0: [-1, 0], n: [n - 1, n]}
    for t in range(1, n):
        uses[t] = [t - 1, t]
    return sizes, uses


def test_chain_needs_two_buffers():
    sizes, uses = _chain(6, 100)
    plan = plan_arena(sizes, uses, {})
    assert plan.size == 200
    assert plan.offsets[0] == plan.offsets[2] == plan.offsets[4] != plan.offsets[1]


def test_alias_shares_the_input_bytes_and_extends_its_life():
    # t0 -> op0 -> t1 ; op1 = RESHAPE t1 -> t2 ; op2 reads t2 -> t3
    sizes = {0: 64, 1: 64, 2: 64, 3: 64}
    uses = {0: [-1, 0], 1: [0, 1], 2: [1, 2], 3: [2, 3]}
    plan = plan_arena(sizes, uses, {2: 1})
    assert plan.offsets[2] == plan.offsets[1]
    assert plan.offsets[3] != plan.offsets[1]
    assert plan.size == 128


def test_sizes_are_aligned():
    plan = plan_arena({0: 3, 1: 5}, {0: [-1, 0], 1: [0, 1]}, {})
    assert all(off % ALIGNMENT == 0 for off in plan.offsets.values())
    assert plan.size == 4 + 8


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 25))
    sizes, uses = {}, {}
    for t in range(n):
        first = draw(st.integers(-1, 12))
        last = draw(st.integers(first, 13))
        sizes[t] = draw(st.integers(1, 300))
        uses[t] = [first, last]
    return sizes, uses


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_live_tensors_never_overlap(graph):
    sizes, uses = graph
    plan = plan_arena(sizes, uses, {})
    for a in sizes:
        for b in sizes:
            if a >= b:
                continue
            alive_together = min(uses[a]) <= max(uses[b]) and min(uses[b]) <= max(uses[a])
            disjoint = (plan.offsets[a] + sizes[a] <= plan.offsets[b]
                        or plan.offsets[b] + sizes[b] <= plan.offsets[a])
            assert disjoint or not alive_together
    # never worse than giving every tensor its own bytes, never better than the busiest moment
    assert plan.size <= sum(-(-s // ALIGNMENT) * ALIGNMENT for s in sizes.values())
    busiest = max(sum(sizes[t] for t in sizes if min(uses[t]) <= i <= max(uses[t]))
                  for i in range(-1, 14))
    assert plan.size >= busiest


def test_streaming_output_overlaps_its_dying_input():
    from tinydeploy.native.planner import Overlap

    sizes, uses = _chain(4, 1000)
    overlaps = [Overlap(op, op + 1, op, 40) for op in range(4)]
    plan = plan_arena(sizes, uses, {}, overlaps)
    assert plan.size < 2000
    for ov in plan.overlaps_used:
        # the output starts at least `gap` bytes before the input it runs over
        assert plan.offsets[ov.out] <= plan.offsets[ov.inp] - ov.gap


def test_overlap_refused_when_the_input_lives_on():
    from tinydeploy.native.planner import Overlap

    # t0 is read again by op 1, so op 0 may not write t1 over it
    sizes = {0: 100, 1: 100, 2: 100}
    uses = {0: [-1, 0, 1], 1: [0, 1], 2: [1, 2]}
    plan = plan_arena(sizes, uses, {}, [Overlap(0, 1, 0, 0)])
    assert plan.overlaps_used == []
    assert abs(plan.offsets[0] - plan.offsets[1]) >= 100


def test_window_gap_of_a_same_padded_3x3_conv():
    from types import SimpleNamespace

    from tinydeploy.native.compiler import window_gap

    op = SimpleNamespace(opcode="CONV_2D", options={
        "padding": "SAME", "stride_h": 1, "stride_w": 1,
        "dilation_h_factor": 1, "dilation_w_factor": 1})
    t = SimpleNamespace(shape=(1, 32, 32, 16))
    # pixel (1, 1) is written together with (1, 2), two at a time: 35 pixels of 16 bytes, while
    # its window still reads from pixel (0, 0)
    assert window_gap(op, t, t, (3, 3)) == 35 * 16


@st.composite
def graphs_with_overlaps(draw):
    """Random lifetimes plus random permitted overlaps (output born at op i over an input made
    earlier and dying there, with a random gap), as compiler._overlaps would offer them."""
    sizes, uses = draw(graphs())
    overlaps = []
    for out in sizes:
        for inp in sizes:
            if (out != inp and min(uses[out]) == max(uses[inp]) >= 0
                    and min(uses[inp]) < min(uses[out]) and draw(st.booleans())):
                gap = draw(st.integers(0, 40)) * ALIGNMENT
                overlaps.append(Overlap(min(uses[out]), out, inp, gap))
    return sizes, uses, overlaps


@settings(max_examples=150, deadline=None)
@given(graphs_with_overlaps())
def test_overlaps_respect_their_gap_and_nothing_else_overlaps(graph):
    sizes, uses, overlaps = graph
    plan = plan_arena(sizes, uses, {}, overlaps)
    permitted = {(ov.out, ov.inp): ov.gap for ov in overlaps}
    assert min(plan.offsets.values()) >= 0
    assert all(off % ALIGNMENT == 0 for off in plan.offsets.values())
    for a in sizes:
        assert plan.offsets[a] + sizes[a] <= plan.size
        for b in sizes:
            if a == b:
                continue
            alive_together = min(uses[a]) <= max(uses[b]) and min(uses[b]) <= max(uses[a])
            disjoint = (plan.offsets[a] + sizes[a] <= plan.offsets[b]
                        or plan.offsets[b] + sizes[b] <= plan.offsets[a])
            if alive_together and not disjoint:
                gap = permitted.get((a, b), permitted.get((b, a)))
                assert gap is not None, (a, b)
                out, inp = (a, b) if (a, b) in permitted else (b, a)
                assert plan.offsets[out] <= plan.offsets[inp] - gap
    assert plan.size >= plan.in_place_bound   # a lower bound indeed


def test_search_reaches_the_bound_where_greedy_placement_does_not():
    """VWW's first layers: a big input, two in-place ops, then an output twice as big over its
    input. Biggest-first placement wastes ~9 KB here; the search finds the busiest op's bound."""
    from tinydeploy import tflite
    from tinydeploy.native.compiler import build_program

    import nativelib

    model = tflite.parse(nativelib.mlperf_path("vww_96_int8.tflite").read_bytes())
    arena = build_program(model).arena
    assert arena.size <= arena.in_place_bound + 64 < arena.live_bound


def test_plans_are_deterministic_and_private():
    from tinydeploy.native.planner import Overlap

    sizes, uses = _chain(8, 96)
    overlaps = [Overlap(op, op + 1, op, 8) for op in range(8)]
    first = plan_arena(sizes, uses, {}, overlaps)
    first.offsets[0] = -1   # a caller changing its plan must not change the next caller's
    second = plan_arena(sizes, uses, {}, overlaps)
    assert second.offsets[0] != -1
    assert second.size == first.size
