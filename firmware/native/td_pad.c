#include "td_pad.h"

#include <stddef.h>
#include <string.h>

/*
 * Recursively fill dimension d of the output block at out from the input block at in (NULL
 * when the whole block is padding). Innermost rows are memcpy'd.
 */
static void pad_block(const td_pad_params_t *p, int d, const int8_t *in, int8_t *out,
                      const size_t *in_block, const size_t *out_block)
{
    const int32_t before = p->before[d];
    const int32_t in_n = p->in_dims[d];
    int32_t i;
    if (in == NULL) {
        memset(out, (int8_t)p->pad_value, out_block[d] * (size_t)p->out_dims[d]);
        return;
    }
    if (d == TD_PAD_MAX_DIMS - 1) {
        memset(out, (int8_t)p->pad_value, (size_t)p->out_dims[d]);
        memcpy(out + before, in, (size_t)in_n);
        return;
    }
    for (i = 0; i < p->out_dims[d]; ++i) {
        const int inside = i >= before && i < before + in_n;
        pad_block(p, d + 1, inside ? in + (size_t)(i - before) * in_block[d] : NULL,
                  out + (size_t)i * out_block[d], in_block, out_block);
    }
}

void td_pad_s8(const td_pad_params_t *p)
{
    const int8_t *input = p->input;
    int8_t *output = p->output;
    /* in_block[d] / out_block[d]: elements in one index step of dimension d. */
    size_t in_block[TD_PAD_MAX_DIMS];
    size_t out_block[TD_PAD_MAX_DIMS];
    int d;
    in_block[TD_PAD_MAX_DIMS - 1] = 1;
    out_block[TD_PAD_MAX_DIMS - 1] = 1;
    for (d = TD_PAD_MAX_DIMS - 2; d >= 0; --d) {
        in_block[d] = in_block[d + 1] * (size_t)p->in_dims[d + 1];
        out_block[d] = out_block[d + 1] * (size_t)p->out_dims[d + 1];
    }
    pad_block(p, 0, input, output, in_block, out_block);
}
