#include "td_conv.h"

#include <stddef.h>

#include "td_qmath.h"

/* Sum over the valid taps of one window of (input + input_offset) * filter. */
static int32_t conv_window(const td_conv_params_t *p, const int8_t *input_batch,
                           const int8_t *filter_oc, int32_t in_y0, int32_t in_x0,
                           int32_t in_c0, const int32_t *ky_range, const int32_t *kx_range)
{
    int32_t acc = 0;
    int32_t ky, kx, c;
    /* Without dilation or groups a filter row and its input pixels are one contiguous run. */
    const int contiguous = p->dilation_w == 1 && p->k_c == p->in_c;
    const int32_t run = contiguous ? (kx_range[1] - kx_range[0]) * p->k_c : p->k_c;
    for (ky = ky_range[0]; ky < ky_range[1]; ++ky) {
        const int32_t in_y = in_y0 + p->dilation_h * ky;
        for (kx = kx_range[0]; kx < kx_range[1]; kx += contiguous ? p->k_w : 1) {
            const int32_t in_x = in_x0 + p->dilation_w * kx;
            const int8_t *in_px = input_batch + ((size_t)in_y * p->in_w + in_x) * p->in_c + in_c0;
            const int8_t *f_px = filter_oc + ((size_t)ky * p->k_w + kx) * p->k_c;
            for (c = 0; c < run; ++c) {
                acc += (int32_t)f_px[c] * ((int32_t)in_px[c] + p->input_offset);
            }
        }
    }
    return acc;
}

void td_conv_s8(const td_conv_params_t *p, const int8_t *input, const int8_t *filter,
                const int32_t *bias, int8_t *output)
{
    const int32_t filters_per_group = p->out_c / (p->in_c / p->k_c);
    const size_t in_batch_size = (size_t)p->in_h * p->in_w * p->in_c;
    const size_t filter_size = (size_t)p->k_h * p->k_w * p->k_c;
    int32_t b, oy, ox, oc;
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
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t q = p->per_channel ? oc : 0;
                    const int32_t in_c0 = (oc / filters_per_group) * p->k_c;
                    int32_t acc = conv_window(p, input_batch, filter + (size_t)oc * filter_size,
                                              in_y0, in_x0, in_c0, ky_range, kx_range);
                    if (bias != NULL) {
                        acc += bias[oc];
                    }
                    acc = td_mul_by_quantized_multiplier(acc, p->multiplier[q], (int)p->shift[q]);
                    acc += p->output_offset;
                    *output++ = (int8_t)td_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
