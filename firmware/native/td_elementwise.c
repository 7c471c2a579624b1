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
    broadcast_apply(&p->shape, add_one, p, p->input1.data, p->input2.data, p->output.data);
}

void td_add_row_s8(const void *params, int32_t row)
{
    const td_add_params_t *p = (const td_add_params_t *)params;
    const int8_t *in1 = td_row(&p->input1, row), *in2 = td_row(&p->input2, row);
    int8_t *out = td_row(&p->output, row);
    int32_t i;
    for (i = 0; i < p->output.row_bytes; ++i) {
        out[i] = (int8_t)add_one(p, in1[i], in2[i]);
    }
}

void td_mul_s8(const td_mul_params_t *p)
{
    broadcast_apply(&p->shape, mul_one, p, p->input1, p->input2, p->output);
}
