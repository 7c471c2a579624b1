#include "td_depthwise.h"

#include <stddef.h>

#include "td_dsp.h"

/* The taps of one output pixel's window that lie inside the image. */
typedef struct {
    int32_t ky0, rows, kx0, cols;    /* taps [ky0, ky0 + rows) x [kx0, kx0 + cols) */
    const int8_t *first;             /* the input pixel under tap (ky0, kx0), channel 0 */
} window_t;

/* Sum over the window of (input + input_offset) * filter for output channel oc of input
 * channel ic. */
static int32_t channel_sum(const td_depthwise_params_t *p, const window_t *w,
                           const int8_t *filter, int32_t ic, int32_t oc, int32_t acc)
{
    const ptrdiff_t row_step = (ptrdiff_t)p->dilation_h * p->in_w * p->in_c;
    const ptrdiff_t col_step = (ptrdiff_t)p->dilation_w * p->in_c;
    int32_t ky, kx;
    for (ky = 0; ky < w->rows; ++ky) {
        const int8_t *in = w->first + ky * row_step + ic;
        const int8_t *f = filter + ((size_t)(w->ky0 + ky) * p->k_w + w->kx0) * p->out_c + oc;
        for (kx = 0; kx < w->cols; ++kx) {
            acc += (in[kx * col_step] + p->input_offset) * f[kx * p->out_c];
        }
    }
    return acc;
}

#if TD_DSP
/*
 * Channels c .. c + 3 (depth multiplier 1): each tap is one word of four input channels and one
 * of four filter values. The input offset is added while widening (__sxtab16); lanes 0/2 and
 * 1/3 then multiply-accumulate into four separate sums (__smlabb / __smlatt: bottom or top
 * halves).
 */
static void four_channel_sums(const td_depthwise_params_t *p, const window_t *w,
                              const int8_t *filter, int32_t c, int32_t *s)
{
    const ptrdiff_t row_step = (ptrdiff_t)p->dilation_h * p->in_w * p->in_c;
    const ptrdiff_t col_step = (ptrdiff_t)p->dilation_w * p->in_c;
    const int32_t offset_pair = td_pair16(p->input_offset);
    int32_t s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
    int32_t ky, kx;
    for (ky = 0; ky < w->rows; ++ky) {
        const int8_t *in = w->first + ky * row_step + c;
        const int8_t *f = filter + ((size_t)(w->ky0 + ky) * p->k_w + w->kx0) * p->out_c + c;
        for (kx = 0; kx < w->cols; ++kx, in += col_step, f += p->out_c) {
            const uint32_t x = td_load4(in), k = td_load4(f);
            const int32_t x02 = td_lanes02_plus(x, offset_pair), x13 = td_lanes13_plus(x, offset_pair);
            const int32_t k02 = td_lanes02(k), k13 = td_lanes13(k);
            s0 = __smlabb(x02, k02, s0);
            s2 = __smlatt(x02, k02, s2);
            s1 = __smlabb(x13, k13, s1);
            s3 = __smlatt(x13, k13, s3);
        }
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
}
#endif

void td_depthwise_conv_s8(const td_depthwise_params_t *p)
{
    const size_t in_batch_size = (size_t)p->in_h * p->in_w * p->in_c;
    const int8_t *filter = p->filter;
    int8_t *output = p->output;
    int32_t b, oy, ox, c, m;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = p->input + (size_t)b * in_batch_size;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t ky1, kx1;
            window_t w;
            td_valid_taps(y0, p->dilation_h, p->k_h, p->in_h, &w.ky0, &ky1);
            w.rows = TD_MAX(ky1 - w.ky0, 0);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                td_valid_taps(x0, p->dilation_w, p->k_w, p->in_w, &w.kx0, &kx1);
                w.cols = TD_MAX(kx1 - w.kx0, 0);
                w.first = w.rows && w.cols
                              ? image + ((size_t)(y0 + w.ky0 * p->dilation_h) * p->in_w +
                                         (size_t)(x0 + w.kx0 * p->dilation_w)) * p->in_c
                              : image;
                c = 0;
#if TD_DSP
                if (p->depth_multiplier == 1) {
                    for (; c + 4 <= p->out_c; c += 4, output += 4) {
                        const td_channel_t *ch = p->channels + c;
                        int32_t s[4] = {ch[0].bias, ch[1].bias, ch[2].bias, ch[3].bias};
                        int32_t i;
                        four_channel_sums(p, &w, filter, c, s);
                        for (i = 0; i < 4; ++i) {
                            const td_requant_t q = td_requant_of(&ch[i], &p->quant);
                            output[i] = td_acc_to_s8(s[i], &q);
                        }
                    }
                }
#endif
                for (; c < p->out_c; ++c) {
                    const int32_t ic = c / p->depth_multiplier;
                    const td_requant_t q = td_requant_of(&p->channels[c], &p->quant);
                    m = channel_sum(p, &w, filter, ic, c, p->channels[c].bias);
                    *output++ = td_acc_to_s8(m, &q);
                }
            }
        }
    }
}
