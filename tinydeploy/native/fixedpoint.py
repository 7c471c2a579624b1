"""Build-time parameters of the fixed-point int8 kernels (SOFTMAX, LOGISTIC, TANH, HARD_SWISH).

TFLite Micro computes these in each op's ``Prepare`` from the tensors' scales and zero points; the
native runtime computes them here, once, at compile time, so the device does no float math. Each
``*_params`` function mirrors TFLM's arithmetic exactly (double precision where TFLM uses double,
float32 where it uses float, round-half-away-from-zero like ``TfLiteRound``), because a multiplier
that is off by one unit in the last place makes outputs differ from TFLM by one step.

Each returns a dict whose keys are exactly the field names of the C struct named under
``c_struct_name`` (see ``firmware/native/td_softmax.h`` and ``td_activation.h``); no kernel here
uses a lookup table. Scales and beta are read from the ``.tflite`` as float32; pass them as Python
floats or numpy float32, both are handled identically.
"""

from __future__ import annotations

import math

import numpy as np

from tinydeploy.errors import ModelError

INT32_MAX = 2**31 - 1

# Integer bits of the fixed-point formats TFLM's kernels use (must match the C side).
SOFTMAX_SCALED_DIFF_INT_BITS = 5
SIGMOID_INPUT_INT_BITS = 4

# TFLM's int8 SOFTMAX and LOGISTIC insist on this output quantization.
SOFTMAX_OUTPUT_SCALE = np.float32(1.0 / 256.0)
SOFTMAX_OUTPUT_ZERO_POINT = -128
LOGISTIC_OUTPUT_ZERO_POINT = -128


def tflite_round(x: float) -> int:
    """Round half away from zero, like ``std::round`` (Python's ``round`` rounds half to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLM's ``QuantizeMultiplier``: ``real ~= q * 2**(shift - 31)`` with q a Q0.31 int32.

    Returns ``(q, shift)``. A mantissa that rounds up to 2**31 is halved (shift + 1); multipliers
    below about 2**-31 are flushed to ``(0, 0)``, as TFLM does.
    """
    if real_multiplier == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real_multiplier)
    q = tflite_round(mantissa * 2.0**31)
    if q == 2**31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def calculate_input_radius(int_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLM's ``CalculateInputRadius``: the largest |input difference| whose rescaled value still
    fits in Q(int_bits); anything beyond saturates the op's output."""
    max_input_rescaled = (
        1.0 * ((1 << int_bits) - 1) * (1 << (total_signed_bits - int_bits)) / (1 << left_shift)
    )
    return int(math.floor(max_input_rescaled))


def _f32(x: float) -> float:
    """The value as TFLM sees it: a float32 from the flatbuffer, widened to double."""
    return float(np.float32(x))


def softmax_params(
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    beta: float,
) -> dict:
    """``td_softmax_params_t`` for an int8 -> int8 SOFTMAX (TFLM ``CalculateSoftmaxParams``).

    The input zero point cancels out (only differences from the row maximum matter). Raises
    :class:`ModelError` for an output quantization TFLM's Prepare would also reject.
    """
    del input_zero_point
    if (
        output_zero_point != SOFTMAX_OUTPUT_ZERO_POINT
        or np.float32(output_scale) != SOFTMAX_OUTPUT_SCALE
    ):
        raise ModelError(
            f"int8 SOFTMAX output is quantized with scale {output_scale} and zero point "
            f"{output_zero_point}, but only scale 1/256 and zero point -128 are supported",
            "re-convert the model with the TFLite converter, which emits exactly that",
        )
    # PreprocessSoftmaxScaling: beta * input_scale in Q5.26, capped at the largest int32.
    real = min(
        _f32(beta) * _f32(input_scale) * (1 << (31 - SOFTMAX_SCALED_DIFF_INT_BITS)),
        float(INT32_MAX),
    )
    if real <= 1.0:  # TFLM's QuantizeMultiplierGreaterThanOne aborts here
        raise ModelError(
            f"SOFTMAX input scale {input_scale} times beta {beta} is at most 2^-26, too small for "
            "TFLM's int8 kernel",
            "quantize the softmax input with a larger range",
        )
    multiplier, left_shift = quantize_multiplier(real)
    diff_min = -calculate_input_radius(SOFTMAX_SCALED_DIFF_INT_BITS, left_shift)
    return {
        "c_struct_name": "td_softmax_params_t",
        "input_multiplier": multiplier,
        "input_left_shift": left_shift,
        "diff_min": diff_min,
    }


def _sigmoid_input_params(input_scale: float, input_zero_point: int) -> dict:
    """Input rescaling shared by LOGISTIC and TANH: (x - zero point) * scale into Q4.27.

    TFLM uses the raw ``frexp`` mantissa here (no halving when it rounds up to 2**31).
    """
    real = _f32(input_scale) * (1 << (31 - SIGMOID_INPUT_INT_BITS))
    mantissa, left_shift = math.frexp(real)
    return {
        "input_zero_point": int(input_zero_point),
        "input_range_radius": calculate_input_radius(SIGMOID_INPUT_INT_BITS, left_shift),
        "input_multiplier": tflite_round(mantissa * 2.0**31),
        "input_left_shift": left_shift,
    }


def logistic_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> dict:
    """``td_logistic_params_t`` for an int8 LOGISTIC (TFLM ``CalculateArithmeticOpDataLogistic``).

    The output is on scale 1/256, zero point -128 by construction of the kernel; TFLM checks the
    zero point only, and so do we (the scale is not used).
    """
    del output_scale
    if output_zero_point != LOGISTIC_OUTPUT_ZERO_POINT:
        raise ModelError(
            f"int8 LOGISTIC output zero point is {output_zero_point}, but only -128 is supported",
            "re-convert the model with the TFLite converter, which emits exactly that",
        )
    return {
        "c_struct_name": "td_logistic_params_t",
        **_sigmoid_input_params(input_scale, input_zero_point),
    }


def tanh_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> dict:
    """``td_tanh_params_t`` for an int8 TANH (TFLM ``CalculateArithmeticOpDataTanh``).

    The kernel always produces scale 1/128, zero point 0 (what the converter emits); like TFLM,
    the output quantization is not checked.
    """
    del output_scale, output_zero_point
    return {
        "c_struct_name": "td_tanh_params_t",
        **_sigmoid_input_params(input_scale, input_zero_point),
    }


def downscale_multiplier_to_int16(multiplier: int) -> int:
    """TFLM's ``DownScaleInt32ToInt16Multiplier``: Q0.31 -> Q0.15, rounded, saturated."""
    rounding_offset = 1 << 15
    if multiplier >= INT32_MAX - rounding_offset:
        return 2**15 - 1
    return (multiplier + rounding_offset) >> 16


def hard_swish_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int
) -> dict:
    """``td_hard_swish_params_t`` for an int8 HARD_SWISH (TFLM ``HardSwishPrepare``).

    TFLM forms the two ratios in float32 before widening them to double; so do we.
    """
    hires_input_scale = np.float32(1.0 / 128.0) * np.float32(input_scale)
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    output_multiplier, output_exponent = quantize_multiplier(
        float(hires_input_scale / np.float32(output_scale))
    )
    if output_exponent > 0:
        raise ModelError(
            f"HARD_SWISH input scale {input_scale} is over 128x its output scale {output_scale}",
            "TFLM rejects this too; re-quantize the model",
        )
    reluish_multiplier, reluish_exponent = quantize_multiplier(
        float(hires_input_scale / reluish_scale)
    )
    return {
        "c_struct_name": "td_hard_swish_params_t",
        "input_zero_point": int(input_zero_point),
        "output_zero_point": int(output_zero_point),
        "output_multiplier_exponent": output_exponent,
        "reluish_multiplier_exponent": reluish_exponent,
        "output_multiplier_fixedpoint_int16": downscale_multiplier_to_int16(output_multiplier),
        "reluish_multiplier_fixedpoint_int16": downscale_multiplier_to_int16(reluish_multiplier),
    }


def c_initializer(params: dict) -> str:
    """The params dict as a C99 designated initializer for its struct, e.g. for ``model.c``:
    ``static const td_softmax_params_t p = {.input_multiplier = 1077952640, ...};``"""
    fields = ", ".join(
        f".{name} = {int(value)}" for name, value in params.items() if name != "c_struct_name"
    )
    return "{" + fields + "}"
