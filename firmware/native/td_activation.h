/*
 * td_activation.h - int8 LOGISTIC, TANH and HARD_SWISH kernels of the native runtime, plus the
 * fixed-point primitives they share with td_softmax.c.
 *
 * Every kernel reproduces TFLite Micro's reference integer arithmetic bit for bit (the gemmlowp
 * fixed-point exp / logistic / tanh, the 16-bit hard-swish pipeline). The parameter structs are
 * filled at build time by tinydeploy/native/fixedpoint.py, which mirrors what TFLM computes in
 * each op's Prepare; the dict it returns has exactly these field names.
 *
 * Portability: like TFLM, this code assumes two's complement integers, an arithmetic right shift
 * of negative values and modular conversion to narrower signed types (true for GCC, Clang,
 * armcc and IAR on every target we build for).
 */
#ifndef TD_ACTIVATION_H
#define TD_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Fixed-point primitives (gemmlowp semantics, int32 raw values) ------------------------- */

/* Rounded high half of 2*a*b: (a * b) / 2^31 rounded to nearest, ties away from zero;
 * saturates the single overflow case a == b == INT32_MIN to INT32_MAX. */
int32_t td_fx_mul(int32_t a, int32_t b);

/* x / 2^exponent rounded to nearest, ties away from zero. exponent in [0, 31]. */
int32_t td_fx_rounding_shr(int32_t x, int exponent);

/* x * 2^exponent, saturated to the int32 range. exponent in [0, 31]. */
int32_t td_fx_saturating_shl(int32_t x, int exponent);

/* TFLM's MultiplyByQuantizedMultiplier (double rounding): x * multiplier * 2^(shift - 31).
 * multiplier is a Q0.31 value in [2^30, 2^31); shift > 0 shifts left, < 0 rounds right. */
int32_t td_fx_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift);

/* exp(a) for a <= 0, where a has int_bits integer bits (Q(int_bits).(31-int_bits)); the result is
 * Q0.31 (exp(0) gives INT32_MAX). int_bits in [0, 5]. */
int32_t td_fx_exp_on_negative_values(int32_t a, int int_bits);

/* 1 / (1 + a) for a in [0, 1), both Q0.31 (Newton-Raphson, three iterations). */
int32_t td_fx_one_over_one_plus_x(int32_t a);

/* logistic(a) = 1 / (1 + exp(-a)); a is Q(int_bits).(31-int_bits) with int_bits in [0, 4]
 * (exp is evaluated with int_bits integer bits); result Q0.31. */
int32_t td_fx_logistic(int32_t a, int int_bits);

/* tanh(a); a is Q(int_bits).(31-int_bits) with int_bits in [0, 4] (exp is evaluated on 2a with
 * int_bits + 1 integer bits); result Q0.31. */
int32_t td_fx_tanh(int32_t a, int int_bits);

/* ---- LOGISTIC ------------------------------------------------------------------------------ */

/* Output is always quantized with scale 1/256 and zero point -128 (TFLM requires that zero point
 * and its kernel assumes that scale). */
typedef struct {
    int32_t input_zero_point;   /* zero point of the input tensor */
    int32_t input_range_radius; /* |input - zero point| >= this saturates to -128 / 127 */
    int32_t input_multiplier;   /* Q0.31 multiplier taking (input - zero point) to Q4.27 */
    int32_t input_left_shift;   /* its exponent (a left shift when positive) */
} td_logistic_params_t;

/* output[i] = logistic(input[i]) for i < size. input and output may be the same buffer. */
void td_logistic_s8(const td_logistic_params_t *params, const int8_t *input, int8_t *output,
                    size_t size);

/* ---- TANH ---------------------------------------------------------------------------------- */

/* Output is always quantized with scale 1/128 and zero point 0 (TFLM's kernel assumes both). */
typedef struct {
    int32_t input_zero_point;   /* zero point of the input tensor */
    int32_t input_range_radius; /* |input - zero point| >= this saturates to -128 / 127 */
    int32_t input_multiplier;   /* Q0.31 multiplier taking (input - zero point) to Q4.27 */
    int32_t input_left_shift;   /* its exponent (a left shift when positive) */
} td_tanh_params_t;

/* output[i] = tanh(input[i]) for i < size. input and output may be the same buffer. */
void td_tanh_s8(const td_tanh_params_t *params, const int8_t *input, int8_t *output,
                size_t size);

/* ---- HARD_SWISH ---------------------------------------------------------------------------- */

/* x * relu6(x + 3) / 6, computed in 16-bit fixed point. "hires input" below is the input
 * (minus its zero point) shifted left by 7 bits, i.e. on scale input_scale / 128. */
typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t output_multiplier_exponent;          /* <= 0: right shift applied last */
    int32_t reluish_multiplier_exponent;         /* exponent of hires input scale / (3/32768) */
    int16_t output_multiplier_fixedpoint_int16;  /* Q0.15 mantissa of hires input / output scale */
    int16_t reluish_multiplier_fixedpoint_int16; /* Q0.15 mantissa of hires input / (3/32768) */
} td_hard_swish_params_t;

/* output[i] = hard_swish(input[i]) for i < size. input and output may be the same buffer. */
void td_hard_swish_s8(const td_hard_swish_params_t *params, const int8_t *input, int8_t *output,
                      size_t size);

#ifdef __cplusplus
}
#endif

#endif /* TD_ACTIVATION_H */
