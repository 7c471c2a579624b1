/*
 * td_activation.c - see td_activation.h. Fixed-point math follows gemmlowp's fixedpoint.h
 * definitions (as used by TFLM's reference integer kernels); written from those definitions.
 *
 * Notation: "Qm.n" is a signed 32-bit raw value with m integer and n = 31 - m fractional bits.
 */
#include "td_activation.h"

/* exp(-2^k) in Q0.31 for k = -2 .. 4: one factor per bit of the input's magnitude above 1/4. */
static const int32_t k_exp_of_minus_pow2[7] = {
    1672461947, /* exp(-1/4) */
    1302514674, /* exp(-1/2) */
    790015084,  /* exp(-1)   */
    290630308,  /* exp(-2)   */
    39332535,   /* exp(-4)   */
    720401,     /* exp(-8)   */
    242,        /* exp(-16)  */
};

#define TD_Q31_ONE INT32_MAX          /* "1.0" in Q0.31 (the closest representable value) */
#define TD_Q29_ONE ((int32_t)1 << 29) /* 1.0 in Q2.29 */

int32_t td_fx_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* C99 division truncates toward zero, which together with the nudge rounds to nearest. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

int32_t td_fx_rounding_shr(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t td_fx_saturating_shl(int32_t x, int exponent)
{
    const int32_t threshold = INT32_MAX >> exponent;
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((int64_t)x * ((int64_t)1 << exponent));
}

int32_t td_fx_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift)
{
    const int left_shift = shift > 0 ? shift : 0;
    const int right_shift = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((int64_t)x * ((int64_t)1 << left_shift));
    return td_fx_rounding_shr(td_fx_mul(shifted, multiplier), right_shift);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series of degree 4 around -1/8. */
static int32_t exp_on_interval_minus_quarter_to_zero(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668; /* exp(-1/8) in Q0.31 */
    const int32_t one_third = 715827883;             /* 1/3 in Q0.31 */
    const int32_t x = a + ((int32_t)1 << 28);        /* x = a + 1/8 */
    const int32_t x2 = td_fx_mul(x, x);
    const int32_t x3 = td_fx_mul(x2, x);
    const int32_t x4 = td_fx_mul(x2, x2);
    const int32_t x4_over_4 = td_fx_rounding_shr(x4, 2);
    /* x^4/24 + x^3/6 + x^2/2 = ((x^4/4 + x^3) / 3 + x^2) / 2 */
    const int32_t higher_terms =
        td_fx_rounding_shr(td_fx_mul(x4_over_4 + x3, one_third) + x2, 1);
    return exp_minus_one_eighth + td_fx_mul(exp_minus_one_eighth, x + higher_terms);
}

int32_t td_fx_exp_on_negative_values(int32_t a, int int_bits)
{
    const int frac_bits = 31 - int_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2);
    /* a = (a mod 1/4 - 1/4) - remainder, with remainder >= 0 a multiple of 1/4. */
    const int32_t a_mod_quarter_minus_quarter = (a & (one_quarter - 1)) - one_quarter;
    const int32_t remainder = a_mod_quarter_minus_quarter - a;
    int32_t result = exp_on_interval_minus_quarter_to_zero(
        td_fx_saturating_shl(a_mod_quarter_minus_quarter, int_bits));
    int k;

    /* exp(-remainder) = product of exp(-2^k) over the set bits 2^k of remainder. */
    for (k = -2; k <= 4 && k < int_bits; ++k) {
        if (remainder & ((int32_t)1 << (frac_bits + k))) {
            result = td_fx_mul(result, k_exp_of_minus_pow2[k + 2]);
        }
    }
    return a == 0 ? TD_Q31_ONE : result;
}

/* Approximates 2 / (1 + a) in Q2.29 for a in [0, 1) given half_denominator = (1 + a) / 2 in
 * Q0.31: Newton-Raphson division seeded with 48/17 - 32/17 * d, three iterations. */
static int32_t two_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + TD_Q31_ONE;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t forty_eight_over_17 = 1515870810;      /* Q2.29 */
    const int32_t minus_thirty_two_over_17 = -1010580540; /* Q2.29 */
    int32_t x = forty_eight_over_17 + td_fx_mul(half_denominator, minus_thirty_two_over_17);
    int i;

    for (i = 0; i < 3; ++i) {
        const int32_t one_minus_d_times_x = TD_Q29_ONE - td_fx_mul(half_denominator, x);
        /* Q2.29 * Q2.29 is Q4.27; back to Q2.29 with a saturating shift by 2. */
        x = x + td_fx_saturating_shl(td_fx_mul(x, one_minus_d_times_x), 2);
    }
    return x;
}

int32_t td_fx_one_over_one_plus_x(int32_t a)
{
    /* 2 / (1 + a) in Q2.29 read as Q1.30 is 1 / (1 + a); rescale Q1.30 to Q0.31. */
    return td_fx_saturating_shl(two_over_one_plus_x(a), 1);
}

/* (1 - a) / (1 + a) = 2 / (1 + a) - 1 for a in [0, 1), Q0.31 in and out. */
static int32_t one_minus_x_over_one_plus_x(int32_t a)
{
    return td_fx_saturating_shl(two_over_one_plus_x(a) - TD_Q29_ONE, 2);
}

int32_t td_fx_logistic(int32_t a, int int_bits)
{
    if (a == 0) {
        return (int32_t)1 << 30; /* 1/2 */
    }
    {
        const int32_t magnitude = a > 0 ? a : -a;
        const int32_t of_magnitude =
            td_fx_one_over_one_plus_x(td_fx_exp_on_negative_values(-magnitude, int_bits));
        return a > 0 ? of_magnitude : TD_Q31_ONE - of_magnitude;
    }
}

int32_t td_fx_tanh(int32_t a, int int_bits)
{
    if (a == 0) {
        return 0;
    }
    {
        const int32_t negative = a < 0 ? a : -a;
        /* -tanh(n) = (1 - exp(2n)) / (1 + exp(2n)) for n < 0; 2n reuses the raw value with one
         * more integer bit. */
        const int32_t neg_tanh_of_negative = one_minus_x_over_one_plus_x(
            td_fx_exp_on_negative_values(negative, int_bits + 1));
        return a < 0 ? -neg_tanh_of_negative : neg_tanh_of_negative;
    }
}

static int8_t clamp_to_int8(int32_t v)
{
    return (int8_t)(v < INT8_MIN ? INT8_MIN : (v > INT8_MAX ? INT8_MAX : v));
}

/* Both TFLM int8 kernels rescale (input - zero point) to Q4.27 and saturate outside the radius. */
#define TD_SIGMOID_INPUT_INT_BITS 4

/* The shared body of LOGISTIC and TANH: saturate inputs beyond the radius, rescale the rest to
 * Q4.27, apply the Q0.31 curve and requantize it to int8 with `out_shift` and `out_offset`. */
static void sigmoid_like_s8(int32_t input_zero_point, int32_t input_range_radius,
                            int32_t input_multiplier, int32_t input_left_shift,
                            int32_t (*curve)(int32_t, int), int out_shift, int32_t out_offset,
                            const int8_t *input, int8_t *output, size_t size)
{
    size_t i;

    for (i = 0; i < size; ++i) {
        const int32_t centered = (int32_t)input[i] - input_zero_point;
        if (centered <= -input_range_radius) {
            output[i] = INT8_MIN;
        } else if (centered >= input_range_radius) {
            output[i] = INT8_MAX;
        } else {
            const int32_t in_q4 = td_fx_multiply_by_quantized_multiplier(
                centered, input_multiplier, (int)input_left_shift);
            const int32_t out_q0 = curve(in_q4, TD_SIGMOID_INPUT_INT_BITS);
            output[i] = clamp_to_int8(td_fx_rounding_shr(out_q0, out_shift) + out_offset);
        }
    }
}

void td_logistic_s8(const td_logistic_params_t *params, const int8_t *input, int8_t *output,
                    size_t size)
{
    /* Q0.31 -> 1/256 steps, output zero point -128. */
    sigmoid_like_s8(params->input_zero_point, params->input_range_radius,
                    params->input_multiplier, params->input_left_shift, td_fx_logistic, 23, -128,
                    input, output, size);
}

void td_tanh_s8(const td_tanh_params_t *params, const int8_t *input, int8_t *output, size_t size)
{
    /* Q0.31 -> 1/128 steps, output zero point 0. */
    sigmoid_like_s8(params->input_zero_point, params->input_range_radius,
                    params->input_multiplier, params->input_left_shift, td_fx_tanh, 24, 0,
                    input, output, size);
}

/* ---- HARD_SWISH: 16-bit fixed point --------------------------------------------------------- */

/* Like td_fx_mul on Q0.15 values: (a * b) / 2^15 rounded to nearest. */
static int16_t mul16_rounding(int16_t a, int16_t b)
{
    if (a == b && a == INT16_MIN) {
        return INT16_MAX;
    }
    {
        const int32_t ab = (int32_t)a * (int32_t)b;
        const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
        return (int16_t)((ab + nudge) / (1 << 15));
    }
}

/* (a * b) / 2^15 truncated toward zero; cancels the rounding bias of mul16_rounding. */
static int16_t mul16_truncating(int16_t a, int16_t b)
{
    if (a == b && a == INT16_MIN) {
        return INT16_MAX;
    }
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

static int16_t saturating_shl16(int16_t value, int amount)
{
    const int64_t shifted = (int64_t)value * ((int64_t)1 << amount);
    return (int16_t)(shifted < INT16_MIN ? INT16_MIN : (shifted > INT16_MAX ? INT16_MAX : shifted));
}

/* TFLM's RoundingDivideByPOT on an int16 value. Its mask is computed in int16, so for
 * exponent >= 16 the mask wraps to -1 and the result is +1 for x >= 0 and -1 for x < 0
 * (not 0): tiny-scale HARD_SWISH layers hit this, and bit-exactness needs it. */
static int16_t rounding_shr16(int16_t x, int exponent)
{
    if (exponent >= 16) {
        return (int16_t)(x >= 0 ? 1 : -1);
    }
    return (int16_t)td_fx_rounding_shr(x, exponent);
}

/* Rescales x (on the hires input scale) to [-1, 1] in Q0.15, where +-1 stands for +-3.0,
 * saturating; the left shift is split around the multiply so saturation is exact. */
static int16_t reluish_rescale(const td_hard_swish_params_t *params, int16_t x)
{
    const int exponent = (int)params->reluish_multiplier_exponent;
    int16_t v = x;

    if (exponent > 0) {
        v = saturating_shl16(v, exponent - 1);
    }
    v = mul16_rounding(v, params->reluish_multiplier_fixedpoint_int16);
    if (exponent > 0) {
        v = saturating_shl16(v, 1);
    } else if (exponent < 0) {
        v = rounding_shr16(v, -exponent);
    }
    return v;
}

void td_hard_swish_s8(const td_hard_swish_params_t *params, const int8_t *input, int8_t *output,
                      size_t size)
{
    size_t i;

    for (i = 0; i < size; ++i) {
        const int16_t centered = (int16_t)((int32_t)input[i] - params->input_zero_point);
        const int16_t hires = (int16_t)(centered * (1 << 7));
        const int16_t on_preshift_output_scale =
            mul16_rounding(hires, params->output_multiplier_fixedpoint_int16);
        /* [-1, 1] -> [0, 1] in Q0.15: relu6(x + 3) / 6. */
        const int16_t reluish =
            (int16_t)(((int32_t)reluish_rescale(params, hires) + (1 << 15)) >> 1);
        const int16_t preshift = mul16_truncating(reluish, on_preshift_output_scale);
        /* The int16 wrap of the zero-point addition is part of TFLM's reference arithmetic. */
        const int16_t shifted = (int16_t)(rounding_shr16(
                                              preshift, -(int)params->output_multiplier_exponent) +
                                          params->output_zero_point);
        output[i] = clamp_to_int8(shifted);
    }
}
