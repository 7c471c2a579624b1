#include "td_depthwise.h"

#include <stddef.h>

#include "td_qmath.h"

/* Sum over the valid taps of one window for input channel ic and output channel oc. */
static int32_t depthwise_window(const td_depthwise_params_t *p, const int8_t *input_batch,
                                const int8_t *filter, int32_t in_y0, int32_t in_x0,
                                int32_t ic, int32_t oc, const int32_t *ky_range,
                                const int32_t *kx_range)
{
    int32_t acc = 0;
    int32_t ky, kx;
    for (ky = ky_range[0]; ky < ky_range[1]; ++ky) {
        const int32_t in_y = in_y0 + p->dilation_h * ky;
        for (kx = kx_range[0]; kx < kx_range[1]; ++kx) {
            const int32_t in_x = in_x0 + p->dilation_w * kx;
            const int32_t in_val = input_batch[((size_t)in_y * p->in_w + in_x) * p->in_c + ic];
            const int32_t f_val = filter[((size_t)ky * p->k_w + kx) * p->out_c + oc];
            acc += f_val * (in_val + p->input_offset);
        }
    }
    return acc;
}

void td_depthwise_conv_s8(const td_depthwise_params_t *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const size_t in_batch_size = (size_t)p->in_h * p->in_w * p->in_c;
    int32_t b, oy, ox, ic, m;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *input_batch = input + (size_t)b * in_batch_size;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_h;
            int32_t ky_range[2];
            td_valid_taps(in_y0, p->dilation_h, p->k_h, p->in_h, &ky_range[0], &ky_range[1]);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_w;
                int32_t kx_range[2];
                td_valid_taps(in_x0, p->dilation_w, p->k_w, p->in_w, &kx_range[0], &kx_range[1]);
                for (ic = 0; ic < p->in_c; ++ic) {
                    for (m = 0; m < p->depth_multiplier; ++m) {
                        const int32_t oc = ic * p->depth_multiplier + m;
                        const int32_t q = p->per_channel ? oc : 0;
                        int32_t acc = depthwise_window(p, input_batch, filter, in_y0, in_x0,
                                                       ic, oc, ky_range, kx_range);
                        if (bias != NULL) {
                            acc += bias[oc];
                        }
                        acc = td_mul_by_quantized_multiplier(acc, p->multiplier[q],
                                                             (int)p->shift[q]);
                        acc += p->output_offset;
                        *output++ = (int8_t)td_clamp(acc, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}
