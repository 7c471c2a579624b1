/*
 * td_softmax.c - see td_softmax.h. Follows the definitions of TFLM's reference int8 softmax:
 * exp of the scaled differences in Q0.31, summed in Q12.19, one reciprocal per row.
 */
#include "td_softmax.h"

#include "td_activation.h"

#define TD_SCALED_DIFF_INT_BITS 5 /* differences are Q5.26 */
#define TD_ACCUM_INT_BITS 12      /* the sum of exps is Q12.19 */

static int count_leading_zeros(uint32_t x)
{
    int n = 0;

    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* 1 / sum for sum > 0 in Q(sum_int_bits): returns a Q0.31 mantissa in (1/2, 1] and sets
 * *bits_over_unit so that 1 / sum = mantissa * 2^-bits_over_unit. */
static int32_t reciprocal(int32_t sum, int sum_int_bits, int *bits_over_unit)
{
    const int headroom_plus_one = count_leading_zeros((uint32_t)sum);
    /* sum normalized to [1, 2) as 1 + f, with f in Q0.31. */
    const int32_t f = (int32_t)(((uint32_t)sum << headroom_plus_one) - 0x80000000u);

    *bits_over_unit = sum_int_bits - headroom_plus_one;
    return td_fx_one_over_one_plus_x(f);
}

/* exp(beta * input_scale * diff) in Q0.31 for diff_min <= diff <= 0. */
static int32_t exp_of_diff(const td_softmax_params_t *params, int32_t diff)
{
    /* With a non-negative shift this is TFLM's MultiplyByQuantizedMultiplierGreaterThanOne. */
    const int32_t scaled = td_fx_multiply_by_quantized_multiplier(
        diff, params->input_multiplier, (int)params->input_left_shift);
    return td_fx_exp_on_negative_values(scaled, TD_SCALED_DIFF_INT_BITS);
}

static void softmax_row(const td_softmax_params_t *params, const int8_t *in, int8_t *out,
                        size_t depth)
{
    int8_t max_in_row = INT8_MIN;
    int32_t sum_of_exps = 0;
    int bits_over_unit;
    int32_t scale;
    size_t c;

    for (c = 0; c < depth; ++c) {
        max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
    }
    for (c = 0; c < depth; ++c) {
        const int32_t diff = (int32_t)in[c] - max_in_row;
        if (diff >= params->diff_min) {
            sum_of_exps += td_fx_rounding_shr(exp_of_diff(params, diff), TD_ACCUM_INT_BITS);
        }
    }
    scale = reciprocal(sum_of_exps, TD_ACCUM_INT_BITS, &bits_over_unit);
    for (c = 0; c < depth; ++c) {
        const int32_t diff = (int32_t)in[c] - max_in_row;
        if (diff >= params->diff_min) {
            /* exp / sum in Q0.31, down to 1/256 steps, shifted to zero point -128. */
            const int32_t q = td_fx_rounding_shr(td_fx_mul(scale, exp_of_diff(params, diff)),
                                                 bits_over_unit + 31 - 8) - 128;
            out[c] = (int8_t)(q > INT8_MAX ? INT8_MAX : (q < INT8_MIN ? INT8_MIN : q));
        } else {
            out[c] = INT8_MIN;
        }
    }
}

void td_softmax_s8(const td_softmax_params_t *params, const int8_t *input, int8_t *output,
                   size_t outer_size, size_t depth)
{
    size_t row;

    for (row = 0; row < outer_size; ++row) {
        softmax_row(params, input + row * depth, output + row * depth, depth);
    }
}
