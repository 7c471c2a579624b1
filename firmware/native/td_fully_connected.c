#include "td_fully_connected.h"

#include <stddef.h>

#include "td_qmath.h"

/* Input row b, readable for depth bytes: in place, or copied to col with zero padding. */
static const int8_t *input_row(const td_fully_connected_params_t *p, int32_t b, int8_t *col)
{
    const int8_t *row = p->input + (size_t)b * p->accum_depth;
    if (p->depth == p->accum_depth) {
        return row;
    }
    td_copy_s8(col, row, p->accum_depth);
    td_fill_s8(col + p->accum_depth, 0, p->depth - p->accum_depth);
    return col;
}

void td_fully_connected_s8(const td_fully_connected_params_t *p)
{
    int32_t b;
    for (b = 0; b < p->batches; b += 2) {
        const int pair = b + 1 < p->batches;
        const int8_t *x0 = input_row(p, b, p->scratch);
        const int8_t *x1 = pair ? input_row(p, b + 1, p->scratch + p->depth) : NULL;
        int8_t *out0 = p->output + (size_t)b * p->out_depth;
        td_gemm_s8(x0, x1, p->weights, p->depth, p->channels, p->out_depth, &p->quant, out0,
                   pair ? out0 + p->out_depth : NULL);
    }
}
