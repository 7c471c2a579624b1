"""Build-time quantization parameters, computed exactly as TFLM's ``Prepare`` computes them.

Bit-exactness with TFLM depends as much on these numbers as on the kernels: a multiplier that
differs in its last bit changes outputs. So each function mirrors TFLM's arithmetic including its
float32/float64 choices (which products are taken in float32 before widening, where rounding is
half-away-from-zero), and says so.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Split a positive real multiplier into (Q31 significand, power-of-two exponent).

    real ~= significand * 2**(exponent - 31) with significand in [2**30, 2**31), like TFLM's
    QuantizeMultiplier: frexp, round half away from zero, renormalise 2**31, flush tiny values.
    """
    if real == 0.0:
        return 0, 0
    fraction, exponent = math.frexp(real)
    q = _round_half_away(fraction * (1 << 31))
    if q == 1 << 31:
        q //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    return int(q), int(exponent)


def _round_half_away(x: float) -> int:
    """std::round: halves go away from zero (Python's round() goes to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _quantize_f32(value: float, scale: np.float32, zero_point: int) -> int:
    """zero_point + round(value / scale), the division in float32 as TFLM's Quantize does."""
    q = np.float32(value) / np.float32(scale)
    return int(zero_point) + _round_half_away(float(q))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """The int8 output range a fused activation clamps to (CalculateActivationRangeQuantized)."""
    lo, hi = INT8_MIN, INT8_MAX
    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, _quantize_f32(0.0, scale, zero_point)), hi
    if activation == "RELU6":
        return (max(lo, _quantize_f32(0.0, scale, zero_point)),
                min(hi, _quantize_f32(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(lo, _quantize_f32(-1.0, scale, zero_point)),
                min(hi, _quantize_f32(1.0, scale, zero_point)))
    raise ValueError(f"fused activation {activation} has no int8 range")


def conv_multipliers(input_scale: float, filter_scales: np.ndarray,
                     output_scale: float) -> tuple[list[int], list[int]]:
    """Per-channel (multiplier, shift) lists for CONV_2D / DEPTHWISE_CONV_2D and per-channel FC.

    TFLM: effective = double(input_scale) * double(filter_scale) / double(output_scale).
    """
    mults, shifts = [], []
    for fs in np.asarray(filter_scales, dtype=np.float32).ravel():
        real = float(np.float32(input_scale)) * float(fs) / float(np.float32(output_scale))
        m, s = quantize_multiplier(real)
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def fully_connected_multiplier(input_scale: float, filter_scale: float,
                               output_scale: float) -> tuple[int, int]:
    """Per-tensor FULLY_CONNECTED.

    Some TFLM sources multiply the two scales in float32 before widening; the tflite_micro build
    we are bit-exact with widens first (checked on ad01, where the float32 product changes one
    output by one step), i.e. the same formula as the per-channel case.
    """
    mults, shifts = conv_multipliers(input_scale, np.array([filter_scale]), output_scale)
    return mults[0], shifts[0]


def ratio_multiplier(numerator_scale: float, denominator_scale: float) -> tuple[int, int]:
    """double(a) / double(b) as a multiplier (requantize, MEAN)."""
    return quantize_multiplier(float(np.float32(numerator_scale)) /
                               float(np.float32(denominator_scale)))


def add_params(scale1: float, scale2: float, output_scale: float, left_shift: int = 20) -> dict:
    """ADD's three rescalings onto a common 2*max(scale) grid (TFLM add_common)."""
    s1, s2, so = (float(np.float32(s)) for s in (scale1, scale2, output_scale))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    return {"left_shift": left_shift, "input1_multiplier": m1, "input1_shift": sh1,
            "input2_multiplier": m2, "input2_shift": sh2,
            "output_multiplier": mo, "output_shift": sho}


def mul_multiplier(scale1: float, scale2: float, output_scale: float) -> tuple[int, int]:
    """MUL: double(s1) * double(s2) / double(so)."""
    s1, s2, so = (float(np.float32(s)) for s in (scale1, scale2, output_scale))
    return quantize_multiplier(s1 * s2 / so)


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """MEAN's rescaling with the 1/count factor folded in, as TFLM's QuantizedMeanOrSum does it.

    TFLM first quantizes in/out, then folds 1/count into the integer multiplier:
    shift = min(floor(log2(count)), 32, 31 + exponent); multiplier = (m << shift) // count.
    """
    m, exponent = ratio_multiplier(input_scale, output_scale)
    shift = min(count.bit_length() - 1, 32, 31 + exponent)
    return int((m << shift) // count), exponent - shift


def out_size(padding: str, in_size: int, filter_size: int, stride: int, dilation: int) -> int:
    """Output length of a window op (TFLM ComputeOutSize)."""
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size + stride - effective) // stride


def padding_before(padding: str, in_size: int, filter_size: int, stride: int,
                   dilation: int) -> int:
    """Padding before the first element (TFLM ComputePaddingWithOffset, offset dropped)."""
    out = out_size(padding, in_size, filter_size, stride, dilation)
    effective = (filter_size - 1) * dilation + 1
    total = max(0, (out - 1) * stride + effective - in_size)
    return total // 2


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier on Python ints (the int32 wrap of the left shift
    included), for bounds the compiler proves about what kernels will compute."""
    shifted = ((x << max(shift, 0)) + 2**31) % 2**32 - 2**31
    if shifted == multiplier == -2**31:
        high = 2**31 - 1
    else:
        high = (shifted * multiplier + (1 << 30)) >> 31
    right = max(-shift, 0)
    if right == 0:
        return high
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


def add_narrow(params: dict, offset1: int, offset2: int) -> bool:
    """Whether an ADD's output requantization may take the short road (td_requantize_narrow):
    the rescaled sum, shifted left as it does, stays below 2^30 for every pair of int8 inputs, and
    it shifts right by at least 1."""
    def largest(offset: int, m: int, s: int) -> int:
        return max(abs(multiply_by_quantized_multiplier((q + offset) << params["left_shift"],
                                                        m, s)) for q in (-128, 127))
    total = (largest(offset1, params["input1_multiplier"], params["input1_shift"])
             + largest(offset2, params["input2_multiplier"], params["input2_shift"]))
    return total * 2 ** max(params["output_shift"], 0) < 2**30 and params["output_shift"] <= -1
