#include "td_elementwise.h"

#include <stddef.h>

#include "td_qmath.h"

typedef int32_t (*binary_fn)(const void *params, int32_t a, int32_t b);

static int32_t add_one(const void *params, int32_t a, int32_t b)
{
    const td_add_params_t *p = (const td_add_params_t *)params;
    const int32_t shifted1 = (a + p->input1_offset) * (1 << p->left_shift);
    const int32_t shifted2 = (b + p->input2_offset) * (1 << p->left_shift);
    const int32_t scaled1 =
        td_mul_by_quantized_multiplier(shifted1, p->input1_multiplier, (int)p->input1_shift);
    const int32_t scaled2 =
        td_mul_by_quantized_multiplier(shifted2, p->input2_multiplier, (int)p->input2_shift);
    const int32_t out = td_mul_by_quantized_multiplier(scaled1 + scaled2, p->output_multiplier,
                                                       (int)p->output_shift) +
                        p->output_offset;
    return td_clamp(out, p->act_min, p->act_max);
}

/*
 * An input rescaled onto the common grid: (q + offset) << 20 with |q + offset| <= 255 is always
 * narrow (< 2^28), and its multiplier is at most 1/2, so its shift never goes left - but the input
 * with the larger scale has exactly 1/2, a right shift of 0: then the high multiply is all.
 */
static inline int32_t rescale_input(int32_t x, int32_t multiplier, int32_t right_shift)
{
    return right_shift > 0 ? td_requantize_narrow(x, multiplier, right_shift)
                           : td_mul_high_round((int32_t)((uint32_t)x << 1), multiplier);
}

/* n elements of a same-shape ADD, the fast way: every parameter in a local, and the short exact
 * requantizations (the sum's when the compiler proved it narrow). */
static void add_elements(const td_add_params_t *p, const int8_t *in1, const int8_t *in2,
                         int8_t *out, int32_t n)
{
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset, shift = p->left_shift;
    const int32_t m1 = p->input1_multiplier, r1 = -p->input1_shift;
    const int32_t m2 = p->input2_multiplier, r2 = -p->input2_shift;
    const int32_t mo = p->output_multiplier;
    const int32_t ro_shift = -p->output_shift; /* >= 1 when narrow */
    const int32_t offset = p->output_offset, lo = p->act_min, hi = p->act_max;
    int32_t i;
    if (!p->narrow) {
        for (i = 0; i < n; ++i) {
            out[i] = (int8_t)add_one(p, in1[i], in2[i]);
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        const int32_t s1 = rescale_input((in1[i] + off1) << shift, m1, r1);
        const int32_t s2 = rescale_input((in2[i] + off2) << shift, m2, r2);
        const int32_t v = td_requantize_narrow(s1 + s2, mo, ro_shift);
        out[i] = (int8_t)td_clamp(v + offset, lo, hi);
    }
}

static int32_t mul_one(const void *params, int32_t a, int32_t b)
{
    const td_mul_params_t *p = (const td_mul_params_t *)params;
    const int32_t product = (a + p->input1_offset) * (b + p->input2_offset);
    const int32_t out = td_mul_by_quantized_multiplier(product, p->output_multiplier,
                                                       (int)p->output_shift) +
                        p->output_offset;
    return td_clamp(out, p->act_min, p->act_max);
}

/* Apply fn over every output element, walking the inputs with their (broadcast) strides. */
static void broadcast_apply(const td_broadcast_t *s, binary_fn fn, const void *params,
                            const int8_t *in1, const int8_t *in2, int8_t *output)
{
    int32_t index[TD_ELEMENTWISE_MAX_DIMS] = {0};
    size_t total = 1;
    size_t off1 = 0, off2 = 0, i;
    int d;
    for (d = 0; d < TD_ELEMENTWISE_MAX_DIMS; ++d) {
        total *= (size_t)s->out_dims[d];
    }
    if (!s->broadcast) {
        for (i = 0; i < total; ++i) {
            output[i] = (int8_t)fn(params, in1[i], in2[i]);
        }
        return;
    }
    for (i = 0; i < total; ++i) {
        output[i] = (int8_t)fn(params, in1[off1], in2[off2]);
        /* Odometer increment of the multi-index, last dimension fastest. */
        for (d = TD_ELEMENTWISE_MAX_DIMS - 1; d >= 0; --d) {
            off1 += (size_t)s->in1_strides[d];
            off2 += (size_t)s->in2_strides[d];
            if (++index[d] < s->out_dims[d]) {
                break;
            }
            off1 -= (size_t)s->in1_strides[d] * (size_t)s->out_dims[d];
            off2 -= (size_t)s->in2_strides[d] * (size_t)s->out_dims[d];
            index[d] = 0;
        }
    }
}

void td_add_s8(const td_add_params_t *p)
{
    if (p->shape.broadcast) {
        broadcast_apply(&p->shape, add_one, p, p->input1.data, p->input2.data, p->output.data);
    } else {
        int32_t n = 1, d;
        for (d = 0; d < TD_ELEMENTWISE_MAX_DIMS; ++d) {
            n *= p->shape.out_dims[d];
        }
        add_elements(p, p->input1.data, p->input2.data, p->output.data, n);
    }
}

void td_add_row_s8(const void *params, int32_t row)
{
    const td_add_params_t *p = (const td_add_params_t *)params;
    add_elements(p, td_row(&p->input1, row), td_row(&p->input2, row), td_row(&p->output, row),
                 p->output.row_bytes);
}

void td_mul_s8(const td_mul_params_t *p)
{
    broadcast_apply(&p->shape, mul_one, p, p->input1, p->input2, p->output);
}
