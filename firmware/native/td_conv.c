#include "td_conv.h"

#include <stddef.h>

#include "td_dsp.h"
#include "td_qmath.h"

/*
 * The window of output pixel (oy, ox) of batch b as one vector of depth int8: channels
 * [c0, c0 + k_c) of each tap in filter order (ky, kx, c). Taps in the padding read the input zero
 * point, which contributes nothing once the input offset is folded into the bias; the depth
 * padding reads 0.
 */
static void gather_window(const td_conv_params_t *p, int32_t b, int32_t oy, int32_t ox,
                          int32_t c0, int8_t *col)
{
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    const int32_t x0 = ox * p->stride_w - p->pad_w;
    const int32_t row_bytes = p->k_w * p->k_c;
    const int8_t pad = (int8_t)p->pad_value;
    int32_t kx_start, kx_end, ky, kx;
    td_valid_taps(x0, p->dilation_w, p->k_w, p->in_w, &kx_start, &kx_end);
    kx_end = TD_MAX(kx_end, kx_start);
    for (ky = 0; ky < p->k_h; ++ky, col += row_bytes) {
        const int32_t y = y0 + ky * p->dilation_h;
        const int8_t *row;
        if (y < 0 || y >= p->in_h) {
            td_fill_s8(col, pad, row_bytes);
            continue;
        }
        row = td_row(&p->input, b * p->in_h + y) + c0;
        if (p->dilation_w == 1 && p->k_c == p->in_c) {
            /* The taps inside the image are one contiguous run of input bytes. */
            td_fill_s8(col, pad, kx_start * p->k_c);
            td_copy_s8(col + kx_start * p->k_c, row + (size_t)(x0 + kx_start) * p->in_c,
                       (kx_end - kx_start) * p->k_c);
            td_fill_s8(col + kx_end * p->k_c, pad, (p->k_w - kx_end) * p->k_c);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                int8_t *dst = col + kx * p->k_c;
                if (kx >= kx_start && kx < kx_end) {
                    td_copy_s8(dst, row + (size_t)(x0 + kx * p->dilation_w) * p->in_c, p->k_c);
                } else {
                    td_fill_s8(dst, pad, p->k_c);
                }
            }
        }
    }
    td_fill_s8(col, 0, p->depth - p->k_h * row_bytes);
}

/* The input vector of output pixel `pixel` (raster index) of batch b, channels from c0:
 * gathered into col, or read in place. */
static const int8_t *window(const td_conv_params_t *p, int32_t b, int32_t pixel, int32_t c0,
                            int8_t *col)
{
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    if (p->gather) {
        gather_window(p, b, oy, ox, c0, col);
        return col;
    }
    return td_row(&p->input, b * p->in_h + oy * p->stride_h) + (size_t)ox * p->stride_w * p->in_c;
}

static int8_t *output_pixel(const td_conv_params_t *p, int32_t b, int32_t pixel)
{
    return td_row(&p->output, b * p->out_h + pixel / p->out_w) +
           (size_t)(pixel % p->out_w) * p->out_c;
}

/* Output rows [first, first + count) of batch b, two pixels at a time (across rows too; the
 * last one alone when their number is odd): both windows are read before any of their outputs
 * is written. */
static void conv_rows(const td_conv_params_t *p, int32_t b, int32_t first, int32_t count)
{
    const int32_t groups = p->in_c / p->k_c;
    const int32_t per_group = p->out_c / groups;
    const int32_t end = (first + count) * p->out_w;
    int32_t i, g;
    for (i = first * p->out_w; i < end; i += 2) {
        const int pair = i + 1 < end;
        int8_t *out0 = output_pixel(p, b, i);
        int8_t *out1 = pair ? output_pixel(p, b, i + 1) : NULL;
        for (g = 0; g < groups; ++g) {
            const int32_t c = g * per_group;
            const int8_t *x0 = window(p, b, i, g * p->k_c, p->scratch);
            const int8_t *x1 = pair ? window(p, b, i + 1, g * p->k_c, p->scratch + p->depth)
                                    : NULL;
            td_gemm_s8(x0, x1, p->weights + (size_t)c * p->depth, p->depth, p->channels + c,
                       per_group, &p->quant, out0 + c, pair ? out1 + c : NULL);
        }
    }
}

void td_conv_s8(const td_conv_params_t *p)
{
    int32_t b;
    for (b = 0; b < p->batches; ++b) {
        conv_rows(p, b, 0, p->out_h);
    }
}

void td_conv_row_s8(const void *params, int32_t row)
{
    conv_rows((const td_conv_params_t *)params, 0, row, 1);
}
