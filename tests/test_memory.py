"""TFLM's arena as the check reports it, against TFLM's arena_used_bytes() measured on a Cortex-M4.

The figures were measured with TFLM's reference kernels (upstream TFLM, 2026-08) built for QEMU
mps2-an386, on the MLPerf Tiny models in examples/mlperf_tiny. The check must never report less than the device uses, and at most 2 % more.
"""

import pytest

from tinydeploy import memory
from tinydeploy.analyze import analyze
from tinydeploy.reference import Reference

from paths import MLPERF

MEASURED_ON_CORTEX_M4 = {
    "pretrainedResnet_quant.tflite": 54_340,
    "ad01_int8.tflite": 2_260,
    "vww_96_int8.tflite": 100_660,
}


@pytest.mark.parametrize("name", sorted(MEASURED_ON_CORTEX_M4))
def test_tflm_arena_is_never_below_and_at_most_2_percent_above_the_m4(name):
    data = (MLPERF / name).read_bytes()
    arena = memory.tflm_arena(data, analyze(data))
    device = MEASURED_ON_CORTEX_M4[name]
    assert device <= arena.total <= device * 1.02, (arena.total, device)


def test_activation_part_is_the_host_measurement_and_persistent_part_shrinks():
    data = (MLPERF / "ad01_int8.tflite").read_bytes()
    record = Reference(data).allocations()
    arena = memory.tflm_arena(data, analyze(data), record)
    assert arena.non_persistent == record.head == 768
    assert 0 < arena.persistent < record.tail


# What the pinned library (Arduino_TensorFlowLite 07d1cca, CMSIS-NN) needs, measured on an emulated
# Cortex-M4 by bench/tflm_memory.py: the smallest arena that initialises, and the code of the
# measurement firmware (interpreter, kernels, port, C/C++ runtime pieces) minus the model.
PINNED_LIBRARY_ON_M4 = {  # model: (arena_min, code_bytes)
    "pretrainedResnet_quant.tflite": (55_200, 67_468),
    "ad01_int8.tflite": (2_964, 39_596),
    "vww_96_int8.tflite": (101_120, 70_704),
}


@pytest.mark.parametrize("name", sorted(PINNED_LIBRARY_ON_M4))
def test_estimates_without_the_library_are_never_below_what_it_needs(name):
    from tinydeploy.boards import load_board

    data = (MLPERF / name).read_bytes()
    a = analyze(data)
    arena_min, code = PINNED_LIBRARY_ON_M4[name]
    estimate = memory.estimate_tflm_arena(memory.tflm_arena(data, a), a, load_board("nano33ble"))
    assert arena_min <= estimate <= arena_min * 1.12 and estimate % 16 == 0
    code_estimate = memory.tflm_code_bytes(a.distinct_ops) - memory.PROTOCOL_CODE
    assert code <= code_estimate <= code * 1.2


def test_thumb1_cores_get_more_code_than_thumb2_cores():
    ops = ["CONV_2D", "FULLY_CONNECTED"]
    assert memory.tflm_code_bytes(ops, "cortex-m0plus") > memory.tflm_code_bytes(ops, "cortex-m4f")
    assert memory.measured_tflm_code(40_000, "cortex-m0plus") > memory.measured_tflm_code(40_000, "cortex-m7")


def test_cmsis_nn_scratch_follows_the_kernels_rules():
    ic = analyze((MLPERF / "pretrainedResnet_quant.tflite").read_bytes())
    assert memory.cmsis_nn_scratch(ic, dsp=True) == 2 * 64 * 3 * 3 * 2  # widest 3x3 conv's im2col
    vww = analyze((MLPERF / "vww_96_int8.tflite").read_bytes())
    assert memory.cmsis_nn_scratch(vww, dsp=True) > memory.cmsis_nn_scratch(vww, dsp=False)
