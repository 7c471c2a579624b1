/*
 * td_quantize.h - QUANTIZE / DEQUANTIZE at the model's boundary and int8 -> int8 requantize,
 * TFLM reference arithmetic.
 */
#ifndef TD_QUANTIZE_H
#define TD_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

/* float32 -> int8: round(x / scale) + zero_point, saturated. */
void td_quantize_f32_s8(const float *input, int8_t *output, size_t n, float scale,
                        int32_t zero_point);
/* int8 -> float32: scale * (q - zero_point), computed in double like TFLM. */
void td_dequantize_s8_f32(const int8_t *input, float *output, size_t n, double scale,
                          int32_t zero_point);
/* int8 -> int8 with another scale / zero point. */
void td_requantize_s8(const int8_t *input, int8_t *output, size_t n, int32_t input_zero_point,
                      int32_t output_zero_point, int32_t multiplier, int32_t shift);

#endif /* TD_QUANTIZE_H */
