/*
 * td_depthwise.h - int8 DEPTHWISE_CONV_2D (NHWC input, [1, k_h, k_w, out_c] filter) with a
 * depth multiplier, TFLM reference arithmetic. Output channel = in_channel * depth_multiplier + m.
 *
 * Padding taps are skipped (as TFLM does), so the input offset is added to each input value
 * rather than folded into the bias; on the DSP path that add is part of widening the input.
 */
#ifndef TD_DEPTHWISE_H
#define TD_DEPTHWISE_H

#include <stdint.h>

#include "td_qmath.h"
#include "td_rows.h"

#define TD_DEPTHWISE_MAX_K_H 32      /* filter rows (the compiler refuses taller filters) */

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
    td_output_t quant;
    const td_channel_t *channels;    /* out_c entries (bias as in the model) */
    const int8_t *filter;            /* [k_h, k_w, out_c] */
    td_rows_t input;
    td_rows_t output;
} td_depthwise_params_t;

void td_depthwise_conv_s8(const td_depthwise_params_t *p);
/* Output row `row` (batch 0) alone: a stage of a streamed chain (td_stream.h). */
void td_depthwise_row_s8(const void *params, int32_t row);

#endif /* TD_DEPTHWISE_H */
