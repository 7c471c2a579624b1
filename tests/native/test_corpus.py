"""Bit-exactness of every native kernel against tflite_micro on the generated per-op corpus.

Each group (see native_corpus.py) is one converted multi-branch model; every branch output is
compared element for element with the tflite_micro interpreter over several random inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import native_corpus
import nativelib
from tinydeploy import tflite

GROUPS = [g.name for g in native_corpus.groups()]
RUNS = 6


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_group_is_bit_exact(group, corpus, kernel_archive, tmp_path):
    model_bytes = corpus[group]
    native_model = nativelib.compile_and_load(model_bytes, tmp_path, kernel_archive)
    ref = nativelib.Reference(model_bytes)
    graph = tflite.parse(model_bytes).main
    rng = np.random.default_rng(1234)
    mismatches = []
    for run in range(RUNS):
        xs = ref.random_inputs(rng)
        expected = ref.run(xs)
        got = native_model.run(xs, ref.out_specs)
        for i, (e, g) in enumerate(zip(expected, got)):
            if not np.array_equal(e, g):
                name = graph.tensors[graph.outputs[i]].name
                diff = np.abs(e.astype(np.float64) - g.astype(np.float64)).max()
                mismatches.append(f"run {run} output {i} ({name}): {np.sum(e != g)}/{e.size} "
                                  f"differ, max |diff| {diff}")
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
              "TANH", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE"}
    assert wanted <= seen, f"never generated: {sorted(wanted - seen)}"
    for opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        assert {(opcode, True), (opcode, False)} <= per_channel, opcode


def test_corpus_has_hundreds_of_cases():
    assert sum(len(g.branches) for g in native_corpus.groups()) >= 200
