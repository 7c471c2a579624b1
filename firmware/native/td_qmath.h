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

#define TD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Saturate an int32 to the [lo, hi] range of an activation. */
static inline int32_t td_clamp(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/*
 * (a * b * 2) >> 32, rounded to nearest, saturating the single overflowing case
 * INT32_MIN * INT32_MIN (gemmlowp SaturatingRoundingDoublingHighMul).
 *
 * gemmlowp adds a nudge of 2^30 (1 - 2^30 for a negative product) and divides by 2^31 truncating
 * toward zero. For every product that is the same as adding 2^30 and flooring (for a negative
 * product, truncating (ab + 1 - 2^30) / 2^31 rounds up, i.e. floors ab + 1 - 2^30 + 2^31 - 1),
 * which compiles to one multiply-accumulate and a shift. `>>` of a negative int64 is arithmetic
 * on every compiler we target.
 */
static inline int32_t td_sat_round_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* x / 2^exponent rounded to nearest, ties away from zero (gemmlowp RoundingDivideByPOT). */
static inline int32_t td_rounding_divide_by_pot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/*
 * x * M for M = multiplier * 2^(shift-31): TFLM's MultiplyByQuantizedMultiplier in its default
 * "double rounding" form (a rounding high multiply, then a rounding right shift).
 */
static inline int32_t td_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return td_rounding_divide_by_pot(td_sat_round_doubling_high_mul(shifted, multiplier),
                                     right_shift);
}

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
