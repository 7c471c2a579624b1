"""The MLPerf Tiny int8 models (examples/mlperf_tiny) through the native runtime: bit-exact with
tflite_micro on random inputs, in no more RAM than TFLM's non-persistent arena (figures measured
with tflite_micro's print_allocations) and in at most half of TFLM's whole arena."""

from __future__ import annotations

import numpy as np
import pytest

import nativelib

# model file -> TFLM non-persistent arena bytes (host recording, same on the M4)
MODELS = {
    "pretrainedResnet_quant.tflite": 49_152,
    "ad01_int8.tflite": 768,
    "vww_96_int8.tflite": 73_728,
}
RANDOM_INPUTS = 100


@pytest.fixture(scope="module", params=sorted(MODELS))
def mlperf(request, kernel_archive, tmp_path_factory):
    model_bytes = nativelib.mlperf_path(request.param).read_bytes()
    work = tmp_path_factory.mktemp(request.param.split(".")[0])
    return request.param, model_bytes, nativelib.compile_and_load(model_bytes, work, kernel_archive)


@pytest.mark.slow
def test_bit_exact_on_random_inputs(mlperf):
    name, model_bytes, native_model = mlperf
    ref = nativelib.Reference(model_bytes)
    rng = np.random.default_rng(7)
    differing = []
    for k in range(RANDOM_INPUTS):
        xs = ref.random_inputs(rng)
        expected = ref.run(xs)
        got = native_model.run(xs, ref.out_specs)
        if not all(np.array_equal(e, g) for e, g in zip(expected, got)):
            differing.append(k)
    assert not differing, f"{name}: outputs differ on inputs {differing[:10]}"


def test_arena_within_tflm_non_persistent(mlperf):
    name, _, native_model = mlperf
    assert native_model.result.scratch_bytes == 0
    assert native_model.result.arena_bytes <= MODELS[name]
    assert native_model.lib.td_model_arena_used() == native_model.result.arena_bytes


def test_arena_at_most_half_of_tflm(mlperf):
    """Issue 10's target: at most half of TFLM's whole arena (arena_used_bytes; tinydeploy.memory
    derives it within 1% from the recording allocator)."""
    from tinydeploy import memory
    from tinydeploy.analyze import analyze

    name, model_bytes, native_model = mlperf
    tflm = memory.tflm_arena(model_bytes, analyze(model_bytes)).total
    assert native_model.result.arena_bytes <= 0.5 * tflm, (name, tflm)


def test_runtime_reports_itself(mlperf):
    _, _, native_model = mlperf
    lib = native_model.lib
    assert lib.td_model_runtime_name() == b"native"
    assert lib.td_model_num_inputs() == 1 and lib.td_model_num_outputs() == 1
    assert lib.td_model_input(1) is None and lib.td_model_output(-1) is None
    assert lib.td_model_input_size(3) == 0
