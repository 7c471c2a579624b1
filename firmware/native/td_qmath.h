/*
 * td_qmath.h - the quantized integer arithmetic every native kernel shares.
 *
 * These are the definitions TensorFlow Lite Micro's reference kernels use (gemmlowp's
 * fixed-point helpers and MultiplyByQuantizedMultiplier), re-derived here so that our kernels
 * round, saturate and shift exactly like TFLM and produce bit-identical int8 outputs.
 *
 * A real multiplier M > 0 is stored as a Q31 significand `multiplier` in [2^30, 2^31) and a
 * power-of-two exponent `shift` (positive = left shift), so that M ~= multiplier * 2^(shift-31).
 * The compiler (tinydeploy/native/qparams.py) computes both at build time.
 */
#ifndef TD_QMATH_H
#define TD_QMATH_H

#include <stdint.h>

#include "td_dsp.h"

#define TD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Saturate an int32 to the [lo, hi] range of an activation. */
static inline int32_t td_clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/*
 * x * M for M = multiplier * 2^(left_shift - right_shift - 31), multiplier in [0, 2^31) (as the
 * compiler makes them: never INT32_MIN, so the doubling high multiply cannot saturate): TFLM's
 * MultiplyByQuantizedMultiplier in its default "double rounding" form - a rounding doubling high
 * multiply of x << left_shift, then a division by 2^right_shift rounding half away from zero.
 * round = 2^right_shift / 2 (0 when right_shift is 0).
 *
 * gemmlowp's rounding doubling high multiply (SaturatingRoundingDoublingHighMul) adds a nudge of
 * 2^30 (1 - 2^30 for a negative product) and divides by 2^31 truncating toward zero. For every
 * product that is the same as adding 2^30 and flooring (for a negative product, truncating
 * (ab + 1 - 2^30) / 2^31 rounds up, i.e. floors ab + 1 - 2^30 + 2^31 - 1), which compiles to one
 * multiply-accumulate and a shift. `>>` of a negative int64 is arithmetic on every compiler we
 * target.
 *
 * The division works on the magnitude in uint32 (|y| <= 2^31 and round <= 2^30 cannot overflow)
 * and puts the sign back: exactly RoundingDivideByPOT, for every y, in a handful of instructions.
 */
static inline int32_t td_requantize(int32_t x, int32_t multiplier, int32_t left_shift,
                                    int32_t right_shift, uint32_t round)
{
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    const int32_t y =
        (int32_t)(((int64_t)shifted * (int64_t)multiplier + ((int64_t)1 << 30)) >> 31);
    const uint32_t sign = (uint32_t)(y >> 31); /* 0 or all ones */
    const uint32_t magnitude = ((uint32_t)y ^ sign) - sign;
    return (int32_t)((((magnitude + round) >> right_shift) ^ sign) - sign);
}

/*
 * td_requantize for a narrow x (|x| < 2^30) and right_shift >= 1 (so no left shift), which the
 * compiler proves before it lets a kernel take this road: the rounding doubling high multiply
 * (x * m + 2^30) >> 31 equals (2x * m + 2^31) >> 32, one rounding most-significant-word multiply
 * (td_mul_high_round), and |y| < 2^30 + 1 leaves room to round half away from zero as
 * (y - [y < 0] + 2^(e-1)) >> e.
 */
static inline int32_t td_requantize_narrow(int32_t x, int32_t multiplier, int32_t right_shift)
{
    const int32_t y = td_mul_high_round((int32_t)((uint32_t)x << 1), multiplier);
    const int32_t below_zero = (int32_t)((uint32_t)y >> 31);
    return (y - below_zero + (1 << (right_shift - 1))) >> right_shift;
}

/* td_requantize with the shift as one exponent (> 0: left shift), as TFLM stores it. */
static inline int32_t td_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    return td_requantize(x, multiplier, left_shift, right_shift, (1u << right_shift) >> 1);
}

/*
 * Per-output-channel quantization of the convolution-like kernels (CONV_2D, DEPTHWISE_CONV_2D,
 * FULLY_CONNECTED), precomputed by the compiler (tinydeploy/native/ops.py).
 */
typedef struct {
    int32_t bias;           /* the op's bias (CONV_2D / FC: with the input offset folded in) */
    int32_t multiplier;     /* Q31 significand of input_scale * filter_scale / output_scale */
    int16_t left_shift;     /* its power-of-two exponent, split: 2^(left_shift - right_shift) */
    int16_t right_shift;
} td_channel_t;

/* Output zero point and the fused activation's range (in output units), and whether the
 * compiler proved the op's requantization fit for the short road: for every channel,
 * |accumulator| < 2^30 whatever the input, and right_shift >= 1 (td_requantize_narrow;
 * tinydeploy/native/ops.py). */
typedef struct {
    int32_t offset;
    int32_t act_min, act_max;
    int32_t narrow;
} td_output_t;

/*
 * Accumulators (bias included) of channels ch[0 .. n) to int8 outputs out[0 .. n):
 * MultiplyByQuantizedMultiplier, + zero point, clamped to the activation range. Narrow ops
 * (o->narrow) take
 * td_requantize_narrow. (td_qmath.c, shared by the kernels that requantize per channel.)
 */
void td_requantize_channels(const td_channel_t *ch, int32_t n, const td_output_t *o,
                            const int32_t *acc, int8_t *out);

/* Copy n int8 a word at a time (newlib-nano's memcpy goes byte by byte); fill n with a value. */
void td_copy_s8(int8_t *dst, const int8_t *src, int32_t n);
void td_fill_s8(int8_t *dst, int8_t value, int32_t n);

/*
 * Window geometry shared by the convolution kernels: the filter taps [*start, *end) that land
 * inside an image of `size` pixels for a window starting at `origin` (negative inside the
 * padding) with the given dilation. Padding taps contribute nothing (TFLM skips them too), so
 * kernels loop over this range without per-tap bounds checks.
 */
static inline void td_valid_taps(int32_t origin, int32_t dilation, int32_t taps, int32_t size,
                                 int32_t *start, int32_t *end)
{
    const int32_t last = (size - origin + dilation - 1) / dilation; /* one past the last inside */
    *start = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
    *end = TD_MIN(taps, last);
}

#endif /* TD_QMATH_H */
