"""Bit-exactness of every native kernel against tflite_micro on the generated per-op corpus.

Each group (see native_corpus.py) is one converted multi-branch model; every branch output is
compared element for element with the tflite_micro interpreter over several random inputs.
The streaming kernels are checked twice: with the planner's arena, and with a layout that puts
every output exactly ``gap`` bytes before the input it overwrites, the tightest overlap the
planner may ever choose (compiler.window_gap), so the in-place proof covers every geometry.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import native_corpus
import nativelib
from tinydeploy import tflite
from tinydeploy.native import compiler
from tinydeploy.native.planner import ALIGNMENT, ArenaPlan

GROUPS = [g.name for g in native_corpus.groups()]
IN_PLACE_GROUPS = [g for g in GROUPS
                   if g.startswith(("conv", "depthwise", "pool", "elementwise", "activation",
                                    "float_io"))]
RUNS = 6


def _mismatches(model_bytes: bytes, native_model: nativelib.NativeModel) -> list[str]:
    ref = nativelib.Reference(model_bytes)
    graph = tflite.parse(model_bytes).main
    rng = np.random.default_rng(1234)
    found = []
    for run in range(RUNS):
        xs = ref.random_inputs(rng)
        expected = ref.run(xs)
        got = native_model.run(xs, ref.out_specs)
        for i, (e, g) in enumerate(zip(expected, got)):
            if not np.array_equal(e, g):
                name = graph.tensors[graph.outputs[i]].name
                diff = np.abs(e.astype(np.float64) - g.astype(np.float64)).max()
                found.append(f"run {run} output {i} ({name}): {np.sum(e != g)}/{e.size} "
                             f"differ, max |diff| {diff}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_group_is_bit_exact(group, corpus, kernel_archive, tmp_path):
    native_model = nativelib.compile_and_load(corpus[group], tmp_path, kernel_archive)
    mismatches = _mismatches(corpus[group], native_model)
    assert not mismatches, "\n".join(mismatches[:20])


def _tightest_overlap_plan(sizes, uses, aliases, overlaps=()):
    """Every op that may write over its dying input does, at exactly the minimal gap; all other
    tensors get their own bytes. (Aliased tensors are left out of the overlaps.)"""
    def align(n):
        return -(-n // ALIGNMENT) * ALIGNMENT

    aliased = set(aliases) | set(aliases.values())
    offsets, used, cur = {}, [], 0
    for ov in overlaps:
        if {ov.out, ov.inp} & (aliased | set(offsets)):
            continue
        if max(uses[ov.inp]) != ov.op or min(uses[ov.out]) != ov.op:
            continue
        offsets[ov.out], offsets[ov.inp] = cur, cur + ov.gap
        cur += align(max(sizes[ov.out], ov.gap + sizes[ov.inp]))
        used.append(ov)
    for t in sorted(sizes):
        root = t
        while root in aliases:
            root = aliases[root]
        if root not in offsets:
            offsets[root], cur = cur, cur + align(sizes[root])
        offsets[t] = offsets[root]
    return ArenaPlan(size=cur, offsets=offsets, overlaps_used=used)


@pytest.mark.slow
@pytest.mark.parametrize("group", IN_PLACE_GROUPS)
def test_group_is_bit_exact_in_place(group, corpus, kernel_archive, tmp_path, monkeypatch):
    monkeypatch.setattr(compiler, "plan_arena", _tightest_overlap_plan)
    native_model = nativelib.compile_and_load(corpus[group], tmp_path, kernel_archive)
    assert len(native_model.result.in_place_ops) >= 8, "too few in-place ops to prove anything"
    mismatches = _mismatches(corpus[group], native_model)
    assert not mismatches, "\n".join(mismatches[:20])


def test_corpus_exercises_every_kernel(corpus):
    """The corpus is only a proof if it reaches every kernel in each quantization granularity."""
    seen = set()
    per_channel = set()
    for model_bytes in corpus.values():
        graph = tflite.parse(model_bytes).main
        for op in graph.operators:
            seen.add(op.opcode)
            if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                filt = graph.tensors[op.inputs[1]]
                per_channel.add((op.opcode, filt.quantization.per_channel))
    wanted = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
              "ADD", "MUL", "MEAN", "PAD", "CONCATENATION", "RESHAPE", "SOFTMAX", "LOGISTIC",
              "TANH", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE",
              "SHAPE", "STRIDED_SLICE", "PACK"}  # shape arithmetic, removed at build time
    assert wanted <= seen, f"never generated: {sorted(wanted - seen)}"
    for opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        assert {(opcode, True), (opcode, False)} <= per_channel, opcode


def test_corpus_has_hundreds_of_cases():
    assert sum(len(g.branches) for g in native_corpus.groups()) >= 200


@pytest.mark.slow
@pytest.mark.parametrize("group", ["conv_a", "depthwise_a", "dense_per_channel", "elementwise"])
def test_wide_requantization_is_bit_exact(group, corpus, kernel_archive, tmp_path, monkeypatch):
    """Kernels requantize the short way only where the compiler proves accumulators narrow; the
    general road (td_requantize) must agree too. Force it everywhere."""
    from tinydeploy.native import ops, qparams

    monkeypatch.setattr(ops, "narrow_accumulators", lambda *args: False)
    monkeypatch.setattr(qparams, "add_narrow", lambda *args: False)
    native_model = nativelib.compile_and_load(corpus[group], tmp_path, kernel_archive)
    source = (tmp_path / "src" / "model.c").read_text()
    assert ".narrow = 1" not in source and not NARROW_QUANT.search(source)
    mismatches = _mismatches(corpus[group], native_model)
    assert not mismatches, "\n".join(mismatches[:20])


def test_narrow_bounds_hold_for_the_corpus(corpus):
    """The bound the compiler proves is not vacuous: real layers are narrow."""
    from tinydeploy.native import compiler
    from tinydeploy import tflite as reader

    program = compiler.build_program(reader.parse(corpus["conv_a"]))
    source = "\n".join(d for _, lowered in program.steps for d in lowered.decls)
    assert len(NARROW_QUANT.findall(source)) >= 20
    program = compiler.build_program(reader.parse(corpus["elementwise"]))
    source = "\n".join(d for _, lowered in program.steps for d in lowered.decls)
    assert source.count(".narrow = 1") >= 5


# td_output_t {output zero point, act_min, act_max, narrow} with narrow = 1
NARROW_QUANT = re.compile(r"\.quant = \{-?\d+, -?\d+, -?\d+, 1\}")
