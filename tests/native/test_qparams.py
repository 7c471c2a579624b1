"""Build-time quantization parameters (what TFLM computes in Prepare)."""

from __future__ import annotations

import math

import pytest

from tinydeploy.native import qparams


@pytest.mark.parametrize("real, expected", [
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.75, (3 << 29, 0)),
    (3.0, (3 << 29, 2)),
    (0.0, (0, 0)),
    (1e-12, (0, 0)),                        # below 2**-32: flushed to zero like TFLM
    ((2**31 - 0.25) / 2**31, (1 << 30, 1)),  # rounds up to 2**31: renormalised
])
def test_quantize_multiplier(real, expected):
    assert qparams.quantize_multiplier(real) == expected


def test_quantize_multiplier_rounds_half_away_from_zero():
    # fraction * 2**31 = 2**30 + 0.5 exactly: std::round goes up, Python's round() would not
    real = (2**30 + 0.5) / 2**31
    assert qparams.quantize_multiplier(real) == (2**30 + 1, 0)


def test_multiplier_reconstructs_the_real_value():
    for real in (0.0013301224, 0.37, 1.9, 250.0):
        m, s = qparams.quantize_multiplier(real)
        assert 2**30 <= m < 2**31
        assert math.isclose(m * 2.0 ** (s - 31), real, rel_tol=1e-9)


def test_activation_ranges():
    assert qparams.activation_range("NONE", 0.1, 3) == (-128, 127)
    assert qparams.activation_range("RELU", 0.1, -20) == (-20, 127)
    assert qparams.activation_range("RELU6", 0.05, -128) == (-128, -8)   # 6 / 0.05 = 120
    assert qparams.activation_range("RELU6", 0.01, -128) == (-128, 127)  # 600 steps: saturates
    assert qparams.activation_range("RELU_N1_TO_1", 0.5, 0) == (-2, 2)
    with pytest.raises(ValueError):
        qparams.activation_range("TANH", 0.1, 0)


@pytest.mark.parametrize("padding, size, k, stride, dilation, out, before", [
    ("SAME", 32, 3, 1, 1, 32, 1),
    ("SAME", 96, 3, 2, 1, 48, 0),     # total padding 1: all of it after (TFLM drops the offset)
    ("SAME", 10, 4, 3, 1, 4, 1),
    ("SAME", 9, 3, 1, 2, 9, 2),       # dilated: effective filter 5
    ("VALID", 32, 8, 8, 1, 4, 0),
    ("VALID", 7, 3, 2, 2, 2, 0),
])
def test_window_geometry(padding, size, k, stride, dilation, out, before):
    assert qparams.out_size(padding, size, k, stride, dilation) == out
    assert qparams.padding_before(padding, size, k, stride, dilation) == before


def test_mean_multiplier_folds_in_the_count():
    m, s = qparams.mean_multiplier(0.1, 0.1, 64)
    # 1/64 of a unit multiplier: (2**30 << 6) // 64 at exponent 1 - 6
    assert (m, s) == (1 << 30, -5)
    m, s = qparams.mean_multiplier(0.2, 0.1, 3)
    assert math.isclose(m * 2.0 ** (s - 31), 2.0 / 3.0, rel_tol=1e-8)


def test_add_params_share_one_grid():
    p = qparams.add_params(0.5, 0.25, 0.5)
    # input 1 has the larger scale: its multiplier is exactly 1/2
    assert (p["input1_multiplier"], p["input1_shift"]) == (1 << 30, 0)
    assert (p["input2_multiplier"], p["input2_shift"]) == (1 << 30, -1)
    assert p["left_shift"] == 20
