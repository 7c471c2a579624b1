#include "td_quantize.h"

#include "td_qmath.h"

/* Round half away from zero (std::round), without needing libm. */
static float round_away(float x)
{
    const float t = (float)(int32_t)x;   /* truncation toward zero */
    const float frac = x - t;
    if (frac >= 0.5f) {
        return t + 1.0f;
    }
    if (frac <= -0.5f) {
        return t - 1.0f;
    }
    return t;
}

void td_quantize_f32_s8(const float *input, int8_t *output, size_t n, float scale,
                        int32_t zero_point)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        float v = input[i] / scale;
        int32_t q;
        /* Saturate before converting: out-of-range float -> int conversion is undefined. */
        v = v < -1000.0f ? -1000.0f : (v > 1000.0f ? 1000.0f : v);
        q = (int32_t)round_away(v) + zero_point;
        output[i] = (int8_t)td_clamp(q, INT8_MIN, INT8_MAX);
    }
}

void td_dequantize_s8_f32(const int8_t *input, float *output, size_t n, double scale,
                          int32_t zero_point)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        output[i] = (float)(scale * (double)((int32_t)input[i] - zero_point));
    }
}

void td_requantize_s8(const int8_t *input, int8_t *output, size_t n, int32_t input_zero_point,
                      int32_t output_zero_point, int32_t multiplier, int32_t shift)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        const int32_t q = td_mul_by_quantized_multiplier((int32_t)input[i] - input_zero_point,
                                                         multiplier, (int)shift) +
                          output_zero_point;
        output[i] = (int8_t)td_clamp(q, INT8_MIN, INT8_MAX);
    }
}
