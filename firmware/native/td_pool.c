#include "td_pool.h"

#include <stddef.h>

#include "td_qmath.h"

/* The part [*start, *end) of a filter window that lies inside an image of `size` pixels. */
static void clip_window(int32_t origin, int32_t filter, int32_t size, int32_t *start,
                        int32_t *end)
{
    *start = TD_MAX(0, -origin);
    *end = TD_MIN(filter, size - origin);
}

int td_avg_pool_s8(const td_pool_params_t *p)
{
    const int8_t *input = p->input;
    int8_t *output = p->output;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * p->channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy_start, fy_end;
            clip_window(y0, p->filter_h, p->in_h, &fy_start, &fy_end);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx_start, fx_end;
                clip_window(x0, p->filter_w, p->in_w, &fx_start, &fx_end);
                for (c = 0; c < p->channels; ++c) {
                    int32_t acc = 0;
                    int32_t count = 0;
                    for (fy = fy_start; fy < fy_end; ++fy) {
                        for (fx = fx_start; fx < fx_end; ++fx) {
                            acc += in_b[((size_t)(y0 + fy) * p->in_w + (x0 + fx)) * p->channels + c];
                            ++count;
                        }
                    }
                    if (count == 0) {
                        return -1;
                    }
                    /* Round half away from zero, with C's truncating division. */
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    *output++ = (int8_t)td_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
    return 0;
}

void td_max_pool_s8(const td_pool_params_t *p)
{
    const int8_t *input = p->input;
    int8_t *output = p->output;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * p->channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_h;
            int32_t fy_start, fy_end;
            clip_window(y0, p->filter_h, p->in_h, &fy_start, &fy_end);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_w;
                int32_t fx_start, fx_end;
                clip_window(x0, p->filter_w, p->in_w, &fx_start, &fx_end);
                for (c = 0; c < p->channels; ++c) {
                    int32_t max = INT8_MIN;
                    for (fy = fy_start; fy < fy_end; ++fy) {
                        for (fx = fx_start; fx < fx_end; ++fx) {
                            const int32_t v =
                                in_b[((size_t)(y0 + fy) * p->in_w + (x0 + fx)) * p->channels + c];
                            max = TD_MAX(max, v);
                        }
                    }
                    *output++ = (int8_t)td_clamp(max, p->act_min, p->act_max);
                }
            }
        }
    }
}
