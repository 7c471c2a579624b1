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


def test_arena_margin_is_at_least_512_bytes_and_aligned():
    assert memory.arena_with_margin(2_000) == 2_512
    assert memory.arena_with_margin(100_000) % 16 == 0
    assert memory.arena_with_margin(100_000) >= 105_000


def test_code_estimate_reproduces_the_measured_tflm_builds():
    # README: TFLM code (runtime + kernels) IC 43,350 B, VWW 41,519 B, AD 23,281 B.
    ic = ["CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    extra = memory.C_LIBRARY_CODE + memory.PROTOCOL_CODE
    assert abs(memory.tflm_code_bytes(ic) - extra - 43_350) < 500
    assert memory.tflm_code_bytes(["FULLY_CONNECTED"]) - extra >= 23_281 - 1_000
