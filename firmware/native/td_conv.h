/*
 * td_conv.h - int8 CONV_2D (NHWC input, OHWI filter, groups), TFLM reference arithmetic.
 *
 * Each output pixel's window is gathered into a vector (im2col) and multiplied with every filter
 * by td_gemm_s8, two pixels at a time. Everything TFLM computes in Prepare (padding, per-channel
 * multipliers, activation range) and the weight layout td_gemm.h describes are made by the
 * compiler (tinydeploy/native/ops.py) and stored next to the weights.
 */
#ifndef TD_CONV_H
#define TD_CONV_H

#include <stdint.h>

#include "td_gemm.h"
#include "td_rows.h"

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;        /* input tensor [batches, in_h, in_w, in_c] */
    int32_t out_h, out_w, out_c;     /* output tensor [batches, out_h, out_w, out_c] */
    int32_t k_h, k_w, k_c;           /* filter [out_c, k_h, k_w, k_c]; k_c < in_c for groups */
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;            /* padding before the first row / column */
    int32_t depth;                   /* k_h * k_w * k_c rounded up to a multiple of 4 */
    int32_t gather;                  /* 1: windows are gathered into scratch (2 * depth bytes);
                                      * 0: a window is one input pixel, read in place (1x1,
                                      * no groups, in_c a multiple of 4) */
    int32_t pad_value;               /* input zero point: what padding taps read */
    td_output_t quant;
    const td_channel_t *channels;    /* out_c entries */
    const int8_t *weights;           /* td_gemm.h's layout, per group */
    td_rows_t input;
    td_rows_t output;
    int8_t *scratch;                 /* 2 * depth bytes; NULL when gather is 0 */
} td_conv_params_t;

void td_conv_s8(const td_conv_params_t *p);
/* Output row `row` (batch 0) alone: a stage of a streamed chain (td_stream.h). */
void td_conv_row_s8(const void *params, int32_t row);

#endif /* TD_CONV_H */
