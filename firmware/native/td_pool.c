#include "td_pool.h"

#include <stddef.h>

#include "td_dsp.h"
#include "td_qmath.h"

/* The part [*start, *end) of a filter window that lies inside an image of `size` pixels. */
static void clip_window(int32_t origin, int32_t filter, int32_t size, int32_t *start,
                        int32_t *end)
{
    *start = TD_MAX(0, -origin);
    *end = TD_MIN(filter, size - origin);
}

/* The in-image taps of one output pixel's window: rows [fy0, fy1) x columns [fx0, fx1),
 * starting at input pixel `first`. */
typedef struct {
    const int8_t *first;
    int32_t rows, cols, count;
} window_t;

static window_t window_at(const td_pool_params_t *p, const int8_t *image, int32_t oy, int32_t ox)
{
    const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
    int32_t fy0, fy1, fx0, fx1;
    window_t w;
    clip_window(y0, p->filter_h, p->in_h, &fy0, &fy1);
    clip_window(x0, p->filter_w, p->in_w, &fx0, &fx1);
    w.rows = TD_MAX(fy1 - fy0, 0);
    w.cols = TD_MAX(fx1 - fx0, 0);
    w.count = w.rows * w.cols;
    w.first = w.count ? image + ((size_t)(y0 + fy0) * p->in_w + (x0 + fx0)) * p->channels
                      : image;
    return w;
}

/* Average of the window for channel c, rounded half away from zero (with C's truncating
 * division), clamped to the activation range. */
TD_NOINLINE static int8_t average(const td_pool_params_t *p, int32_t sum, int32_t count)
{
    sum = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
    return (int8_t)td_clamp(sum, p->act_min, p->act_max);
}

#if TD_DSP
/*
 * Window sums of channels c .. c + 3 in two int16 pairs (channels 0/2 and 1/3): __sxtab16 adds the
 * sign-extended bytes of a word to both halves at once. A window of at most 256 taps cannot
 * overflow 16 bits (256 * -128 = -32768).
 */
static void four_channel_sums(const window_t *w, int32_t row_step, int32_t channels, int32_t c,
                              int32_t *sum02, int32_t *sum13)
{
    const int8_t *row = w->first + c;
    int32_t s02 = 0, s13 = 0, r, k;
    for (r = 0; r < w->rows; ++r, row += row_step) {
        for (k = 0; k < w->cols * channels; k += channels) {
            const uint32_t x = td_load4(row + k);
            s02 = __sxtab16(s02, (int32_t)x);
            s13 = td_lanes13_plus(x, s13);
        }
    }
    *sum02 = s02;
    *sum13 = s13;
}

/* Byte-wise maximum of the window for channels c .. c + 3: __ssub8 compares the four signed
 * lanes (setting one flag per lane), __sel takes each lane from the larger. */
static uint32_t four_channel_max(const window_t *w, int32_t row_step, int32_t channels, int32_t c)
{
    const int8_t *row = w->first + c;
    uint32_t m = td_load4(row);
    int32_t r, k;
    for (r = 0; r < w->rows; ++r, row += row_step) {
        for (k = 0; k < w->cols * channels; k += channels) {
            const uint32_t x = td_load4(row + k);
            (void)__ssub8((int32_t)x, (int32_t)m);
            m = __sel(x, m);
        }
    }
    return m;
}
#endif

int td_avg_pool_s8(const td_pool_params_t *p)
{
    const int32_t row_step = p->in_w * p->channels;
    int8_t *out = p->output;
    int32_t b, oy, ox, c, r, k;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = p->input + (size_t)b * p->in_h * p->in_w * p->channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox, out += p->channels) {
                const window_t w = window_at(p, image, oy, ox);
                if (w.count == 0) {
                    return -1;
                }
                c = 0;
#if TD_DSP
                if (w.count <= 256) {
                    for (; c + 4 <= p->channels; c += 4) {
                        int32_t s02, s13;
                        four_channel_sums(&w, row_step, p->channels, c, &s02, &s13);
                        out[c] = average(p, (int16_t)s02, w.count);
                        out[c + 1] = average(p, (int16_t)s13, w.count);
                        out[c + 2] = average(p, s02 >> 16, w.count);
                        out[c + 3] = average(p, s13 >> 16, w.count);
                    }
                }
#endif
                for (; c < p->channels; ++c) {
                    const int8_t *row = w.first + c;
                    int32_t sum = 0;
                    for (r = 0; r < w.rows; ++r, row += row_step) {
                        for (k = 0; k < w.cols; ++k) {
                            sum += row[k * p->channels];
                        }
                    }
                    out[c] = average(p, sum, w.count);
                }
            }
        }
    }
    return 0;
}

void td_max_pool_s8(const td_pool_params_t *p)
{
    const int32_t row_step = p->in_w * p->channels;
    int8_t *out = p->output;
    int32_t b, oy, ox, c, r, k;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = p->input + (size_t)b * p->in_h * p->in_w * p->channels;
        for (oy = 0; oy < p->out_h; ++oy) {
            for (ox = 0; ox < p->out_w; ++ox, out += p->channels) {
                const window_t w = window_at(p, image, oy, ox);
                c = 0;
#if TD_DSP
                if (w.count > 0) {
                    for (; c + 4 <= p->channels; c += 4) {
                        const uint32_t m = four_channel_max(&w, row_step, p->channels, c);
                        int32_t i;
                        for (i = 0; i < 4; ++i) {
                            out[c + i] = (int8_t)td_clamp((int8_t)(m >> (8 * i)), p->act_min,
                                                          p->act_max);
                        }
                    }
                }
#endif
                for (; c < p->channels; ++c) {
                    const int8_t *row = w.first + c;
                    int32_t max = INT8_MIN;
                    for (r = 0; r < w.rows; ++r, row += row_step) {
                        for (k = 0; k < w.cols; ++k) {
                            max = TD_MAX(max, row[k * p->channels]);
                        }
                    }
                    out[c] = (int8_t)td_clamp(max, p->act_min, p->act_max);
                }
            }
        }
    }
}
