"""Row-streamed chains (tinydeploy/native/stream.py, firmware/native/td_stream.c).

The compiler streams a chain only where that shrinks the arena, so few corpus models would
exercise streams on their own: here every chain that can be streamed is (``every_stream``), on
the corpus groups built of chained window ops, and the results must stay bit-exact - with the
planner's layout and with every stream output written over its dying input at exactly the gap
the schedule leaves. The rules of what may be a stream and the ring sizes are checked directly.
"""

from __future__ import annotations

import numpy as np
import pytest

import nativelib
import qemulib
from test_corpus import _mismatches, _tightest_overlap_plan
from tinydeploy import tflite
from tinydeploy.native import compiler, stream

STREAMED_GROUPS = ["blocks", "networks"]


def every_stream(graph, dead) -> list[stream.Stream]:
    """From each op on, the longest run that can be a stream (runs do not overlap)."""
    return stream.longest_streams(graph, dead)


@pytest.fixture
def forced_streams(monkeypatch):
    monkeypatch.setattr(compiler, "choose_streams", every_stream)
    monkeypatch.setattr(compiler, "STREAMS_MUST_SHRINK_THE_ARENA", False)


def _streams_of(model_bytes: bytes) -> list[stream.Stream]:
    return compiler.build_program(tflite.parse(model_bytes)).streams


@pytest.mark.slow
@pytest.mark.parametrize("group", STREAMED_GROUPS)
def test_streamed_chains_are_bit_exact(group, corpus, kernel_archive, tmp_path, forced_streams):
    streams = _streams_of(corpus[group])
    assert len(streams) >= 4 and sum(len(s.ops) for s in streams) >= 12
    native_model = nativelib.compile_and_load(corpus[group], tmp_path, kernel_archive)
    found = _mismatches(corpus[group], native_model)
    assert not found, "\n".join(found[:20])


@pytest.mark.slow
@pytest.mark.parametrize("group", STREAMED_GROUPS)
def test_streamed_chains_are_bit_exact_at_the_tightest_overlap(group, corpus, kernel_archive,
                                                               tmp_path, forced_streams,
                                                               monkeypatch):
    monkeypatch.setattr(compiler, "plan_arena", _tightest_overlap_plan)
    native_model = nativelib.compile_and_load(corpus[group], tmp_path, kernel_archive)
    streamed_outputs = {s.output for s in _streams_of(corpus[group]) if s.gaps}
    overlapping = [ov for ov in native_model.result.in_place_ops]
    assert streamed_outputs and overlapping
    found = _mismatches(corpus[group], native_model)
    assert not found, "\n".join(found[:20])


@pytest.mark.parametrize("board", ["qemu-m4", "qemu-m3"])
@pytest.mark.parametrize("group", STREAMED_GROUPS)
def test_streamed_chains_are_bit_exact_on_board(group, board, corpus, tmp_path, forced_streams):
    if not qemulib.have_qemu():
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)")
    fw = qemulib.build_firmware(corpus[group], board, tmp_path)
    ref = nativelib.Reference(corpus[group])
    rng = np.random.default_rng(21)
    samples = [ref.random_inputs(rng) for _ in range(2)]
    outputs, _ = fw.run(samples)
    for xs, got in zip(samples, outputs):
        for e, g in zip(ref.run(xs), got):
            assert np.array_equal(e, np.asarray(g).reshape(e.shape))


# ---- what may be a stream, and what the simulation decides --------------------------------------

def _resnet() -> tflite.Model:
    return tflite.parse(nativelib.mlperf_path("pretrainedResnet_quant.tflite").read_bytes())


def _consumers(graph) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for op in graph.operators:
        for idx in op.inputs:
            found.setdefault(idx, []).append(op.index)
    return found


def test_a_resnet_block_streams_with_rings_of_its_window_rows():
    """IC's first block: conv (3x3) -> conv (3x3) -> conv (3x3) -> add with the first conv's
    output. Each 3x3 window needs 3 rows of its input; the add reads the first conv's row r when
    the second conv has already read up to row r + 2: 3 rows; the third conv's output is read
    once, row by row: 1 row."""
    graph = _resnet().main
    s = stream.make_stream(graph, [0, 1, 2, 3], _consumers(graph), set(graph.outputs))
    assert s is not None and s.output == graph.operators[3].outputs[0]
    first, second, third = (graph.operators[i].outputs[0] for i in range(3))
    assert s.internal == {first: 3, second: 3, third: 1}
    assert s.external == [graph.operators[0].inputs[0]]
    heights = [graph.tensors[graph.operators[i].outputs[0]].shape[1] for i in range(4)]
    assert sorted(s.schedule) == sorted(k for k, h in enumerate(heights) for _ in range(h))
    # every stage's rows come in order, each after the rows it reads
    assert s.schedule[:4] == [0, 0, 1, 0] and s.schedule[-1] == 3


def test_what_cannot_be_a_stream():
    graph = _resnet().main
    consumers, outputs = _consumers(graph), set(graph.outputs)
    # op 0's output is read by op 3 too: it cannot stay inside [0, 1]
    assert stream.make_stream(graph, [0, 1], consumers, outputs) is None
    # AVERAGE_POOL_2D is not a stage kind; one op is no chain
    assert stream.make_stream(graph, [11, 12], consumers, outputs) is None
    assert stream.make_stream(graph, [1], consumers, outputs) is None
    # a chain whose middle tensor is a model output cannot hide it in a ring
    middle = graph.operators[1].outputs[0]
    assert stream.make_stream(graph, [1, 2, 3], consumers, outputs | {middle}) is None
    assert stream.make_stream(graph, [1, 2, 3], consumers, outputs) is not None


def test_the_compiler_streams_where_the_arena_shrinks():
    program = compiler.build_program(_resnet())
    assert [s.ops for s in program.streams] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    ring = [t for t in program.tensors.values() if t.place == "ring"]
    assert len(ring) == 6 and program.arena.size < 0.5 * 54_340   # TFLM's arena_used_bytes
    # a model whose busiest op a stream cannot relieve gets none
    ad = compiler.build_program(tflite.parse(
        nativelib.mlperf_path("ad01_int8.tflite").read_bytes()))
    assert ad.streams == []
