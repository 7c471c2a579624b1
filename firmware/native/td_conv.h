/*
 * td_conv.h - int8 CONV_2D (NHWC input, OHWI filter), TFLM reference arithmetic.
 *
 * Everything TFLM computes in Prepare (padding, per-channel multipliers, activation range) is
 * computed by the compiler and stored in a const td_conv_params_t next to the weights.
 */
#ifndef TD_CONV_H
#define TD_CONV_H

#include <stdint.h>

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;        /* input tensor [batches, in_h, in_w, in_c] */
    int32_t out_h, out_w, out_c;     /* output tensor [batches, out_h, out_w, out_c] */
    int32_t k_h, k_w, k_c;           /* filter [out_c, k_h, k_w, k_c]; k_c < in_c for groups */
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;            /* padding before the first row / column */
    int32_t input_offset;            /* -input zero point */
    int32_t output_offset;           /* output zero point */
    int32_t act_min, act_max;        /* fused activation range, in output units */
    int32_t per_channel;             /* 1: multiplier/shift have out_c entries, 0: one entry */
    const int32_t *multiplier;
    const int8_t *shift;             /* power-of-two exponents, -31..30 */
} td_conv_params_t;

/* bias may be NULL. */
void td_conv_s8(const td_conv_params_t *p, const int8_t *input, const int8_t *filter,
                const int32_t *bias, int8_t *output);

#endif /* TD_CONV_H */
