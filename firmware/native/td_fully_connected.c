#include "td_fully_connected.h"

#include <stddef.h>

#include "td_qmath.h"

void td_fully_connected_s8(const td_fully_connected_params_t *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output)
{
    int32_t b, o, d;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_row = input + (size_t)b * p->accum_depth;
        for (o = 0; o < p->out_depth; ++o) {
            const int8_t *f_row = filter + (size_t)o * p->accum_depth;
            const int32_t q = p->per_channel ? o : 0;
            int32_t acc = 0;
            for (d = 0; d < p->accum_depth; ++d) {
                acc += ((int32_t)f_row[d] + p->filter_offset) *
                       ((int32_t)in_row[d] + p->input_offset);
            }
            if (bias != NULL) {
                acc += bias[o];
            }
            acc = td_mul_by_quantized_multiplier(acc, p->multiplier[q], (int)p->shift[q]);
            acc += p->output_offset;
            *output++ = (int8_t)td_clamp(acc, p->act_min, p->act_max);
        }
    }
}
