#include "td_depthwise.h"

#include <stddef.h>

#include "td_dsp.h"

/*
 * The taps of one output pixel's window that lie inside the image: `rows` input rows (pointers
 * to channel 0 of the first valid column) by `cols` columns; a column steps the input by in_col
 * bytes and the filter by out_c. f points at the filter value of the first valid tap.
 */
typedef struct {
    const int8_t *const *row;
    int32_t rows, cols;
    ptrdiff_t in_col;
    const int8_t *f;
    ptrdiff_t f_row;                 /* filter bytes from one filter row to the next */
} window_t;

/* Sum over the window of (input + input_offset) * filter for input channel ic, output channel
 * oc, starting from acc. */
static int32_t channel_sum(const window_t *w, int32_t out_c, int32_t input_offset, int32_t ic,
                           int32_t oc, int32_t acc)
{
    int32_t r, k;
    for (r = 0; r < w->rows; ++r) {
        const int8_t *in = w->row[r] + ic;
        const int8_t *f = w->f + r * w->f_row + oc;
        for (k = 0; k < w->cols; ++k, in += w->in_col, f += out_c) {
            acc += (*in + input_offset) * *f;
        }
    }
    return acc;
}

/* Channels done per pass: their sums wait in a small buffer and are requantized together. */
#define TD_DEPTHWISE_BLOCK 32

#if TD_DSP
/*
 * Sums of channels c0 .. c0 + n (n a multiple of 4; depth multiplier 1 and no horizontal
 * dilation, so a tap steps the input and the filter by the same out_c bytes), four at a time: each
 * tap is one word of four input channels and one of four filter values. The input offset is added
 * while widening (__sxtab16); lanes 0/2 and 1/3 then multiply-accumulate into four separate sums
 * (__smlabb / __smlatt: the bottom or top halves of both operands).
 */
TD_NOINLINE static void four_channel_sums(const window_t *w, int32_t out_c, int32_t offset_pair,
                                          const td_channel_t *ch, int32_t c0, int32_t n,
                                          int32_t *sums)
{
    const int32_t row_bytes = w->cols * out_c;
    int32_t c, r, at;
    for (c = c0; c < c0 + n; c += 4, sums += 4) {
        const int8_t *f = w->f + c;
        int32_t s0 = ch[c].bias, s1 = ch[c + 1].bias, s2 = ch[c + 2].bias, s3 = ch[c + 3].bias;
        for (r = 0; r < w->rows; ++r, f += w->f_row) {
            const int8_t *in = w->row[r] + c;
            for (at = 0; at < row_bytes; at += out_c) {
                const uint32_t x = td_load4(in + at), h = td_load4(f + at);
                const int32_t x02 = td_lanes02_plus(x, offset_pair);
                const int32_t x13 = td_lanes13_plus(x, offset_pair);
                const int32_t h02 = td_lanes02(h), h13 = td_lanes13(h);
                s0 = __smlabb(x02, h02, s0);
                s2 = __smlatt(x02, h02, s2);
                s1 = __smlabb(x13, h13, s1);
                s3 = __smlatt(x13, h13, s3);
            }
        }
        sums[0] = s0;
        sums[1] = s1;
        sums[2] = s2;
        sums[3] = s3;
    }
}
#endif

/* One output pixel: all out_c channels, written in order. */
TD_NOINLINE static void output_pixel(const td_depthwise_params_t *p, const window_t *w,
                                     int8_t *out)
{
    int32_t sums[TD_DEPTHWISE_BLOCK];
    int32_t c0, c;
    for (c0 = 0; c0 < p->out_c; c0 += TD_DEPTHWISE_BLOCK) {
        const int32_t n = TD_MIN(TD_DEPTHWISE_BLOCK, p->out_c - c0);
        int32_t done = 0;
#if TD_DSP
        if (p->depth_multiplier == 1 && p->dilation_w == 1) {
            done = n & ~3;
            four_channel_sums(w, p->out_c, td_pair16(p->input_offset), p->channels, c0, done,
                              sums);
        }
#endif
        for (c = done; c < n; ++c) {
            sums[c] = channel_sum(w, p->out_c, p->input_offset, (c0 + c) / p->depth_multiplier,
                                  c0 + c, p->channels[c0 + c].bias);
        }
        td_requantize_channels(p->channels + c0, n, &p->quant, sums, out + c0);
    }
}

/* Output row oy of batch b. */
static void depthwise_row(const td_depthwise_params_t *p, int32_t b, int32_t oy)
{
    const int8_t *rows[TD_DEPTHWISE_MAX_K_H];
    const int32_t y0 = oy * p->stride_h - p->pad_h;
    int8_t *out = td_row(&p->output, b * p->out_h + oy);
    int32_t ky0, ky1, r, ox, valid_rows, x0 = -p->pad_w;
    window_t w;
    td_valid_taps(y0, p->dilation_h, p->k_h, p->in_h, &ky0, &ky1);
    valid_rows = TD_MAX(ky1 - ky0, 0);
    for (r = 0; r < valid_rows; ++r) {
        rows[r] = td_row(&p->input, b * p->in_h + y0 + (ky0 + r) * p->dilation_h);
    }
    w.in_col = (ptrdiff_t)p->dilation_w * p->in_c;
    w.f_row = (ptrdiff_t)p->k_w * p->out_c;
    for (ox = 0; ox < p->out_w; ++ox, out += p->out_c, x0 += p->stride_w) {
        const int8_t *first[TD_DEPTHWISE_MAX_K_H];
        int32_t kx0, kx1;
        if (p->dilation_w == 1) {
            kx0 = TD_MAX(-x0, 0);
            kx1 = TD_MIN(p->k_w, p->in_w - x0);
        } else {
            td_valid_taps(x0, p->dilation_w, p->k_w, p->in_w, &kx0, &kx1);
        }
        w.cols = TD_MAX(kx1 - kx0, 0);
        w.rows = w.cols > 0 ? valid_rows : 0;
        w.f = w.rows ? p->filter + ((size_t)ky0 * p->k_w + kx0) * p->out_c : p->filter;
        for (r = 0; r < w.rows; ++r) {
            first[r] = rows[r] + (ptrdiff_t)(x0 + kx0 * p->dilation_w) * p->in_c;
        }
        w.row = first;
        output_pixel(p, &w, out);
    }
}

void td_depthwise_conv_s8(const td_depthwise_params_t *p)
{
    int32_t b, oy;
    for (b = 0; b < p->batches; ++b) {
        for (oy = 0; oy < p->out_h; ++oy) {
            depthwise_row(p, b, oy);
        }
    }
}

void td_depthwise_row_s8(const void *params, int32_t row)
{
    depthwise_row((const td_depthwise_params_t *)params, 0, row);
}
