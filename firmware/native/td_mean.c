#include "td_mean.h"

#include <stddef.h>

#include "td_qmath.h"

/* Advance an odometer over dims; returns the change of the flat input offset. */
static ptrdiff_t odometer_next(int32_t *index, const int32_t *dims, const int32_t *strides)
{
    ptrdiff_t delta = 0;
    int d;
    for (d = TD_MEAN_MAX_DIMS - 1; d >= 0; --d) {
        delta += strides[d];
        if (++index[d] < dims[d]) {
            return delta;
        }
        delta -= (ptrdiff_t)strides[d] * dims[d];
        index[d] = 0;
    }
    return delta;
}

static size_t product(const int32_t *dims)
{
    size_t n = 1;
    int d;
    for (d = 0; d < TD_MEAN_MAX_DIMS; ++d) {
        n *= (size_t)dims[d];
    }
    return n;
}

void td_mean_s8(const td_mean_params_t *p)
{
    const int8_t *input = p->input;
    int8_t *output = p->output;
    const size_t num_outputs = product(p->kept_dims);
    int32_t kept_index[TD_MEAN_MAX_DIMS] = {0};
    ptrdiff_t base = 0;
    size_t o, r;
    for (o = 0; o < num_outputs; ++o) {
        int32_t reduced_index[TD_MEAN_MAX_DIMS] = {0};
        ptrdiff_t offset = base;
        int32_t sum = 0;
        int32_t out;
        for (r = 0; r < (size_t)p->count; ++r) {
            sum += input[offset];
            offset += odometer_next(reduced_index, p->reduced_dims, p->reduced_strides);
        }
        if (p->same_quantization) {
            out = sum / p->count;
        } else {
            out = td_mul_by_quantized_multiplier(sum - p->input_zero_point * p->count,
                                                 p->multiplier, (int)p->shift) +
                  p->output_zero_point;
            out = td_clamp(out, INT8_MIN, INT8_MAX);
        }
        output[o] = (int8_t)out;
        base += odometer_next(kept_index, p->kept_dims, p->kept_strides);
    }
}
