/*
 * td_depthwise.h - int8 DEPTHWISE_CONV_2D (NHWC input, [1, k_h, k_w, out_c] filter) with a
 * depth multiplier, TFLM reference arithmetic. Output channel = in_channel * depth_multiplier + m.
 */
#ifndef TD_DEPTHWISE_H
#define TD_DEPTHWISE_H

#include <stdint.h>

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;     /* out_c = in_c * depth_multiplier */
    int32_t k_h, k_w;
    int32_t depth_multiplier;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;
    int32_t input_offset;            /* -input zero point */
    int32_t output_offset;           /* output zero point */
    int32_t act_min, act_max;
    int32_t per_channel;             /* 1: multiplier/shift have out_c entries, 0: one entry */
    const int32_t *multiplier;
    const int8_t *shift;             /* power-of-two exponents, -31..30 */
} td_depthwise_params_t;

/* bias may be NULL. */
void td_depthwise_conv_s8(const td_depthwise_params_t *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* TD_DEPTHWISE_H */
