/*
 * td_fully_connected.h - int8 FULLY_CONNECTED, per-tensor or per-channel weights, TFLM
 * reference arithmetic. Input is viewed as [batches, accum_depth], weights as
 * [out_depth, accum_depth] (in td_gemm.h's layout), output as [batches, out_depth].
 */
#ifndef TD_FULLY_CONNECTED_H
#define TD_FULLY_CONNECTED_H

#include <stdint.h>

#include "td_gemm.h"

typedef struct {
    int32_t batches;
    int32_t accum_depth;
    int32_t out_depth;
    int32_t depth;                   /* accum_depth rounded up to a multiple of 4 */
    td_output_t quant;
    const td_channel_t *channels;    /* out_depth entries */
    const int8_t *weights;           /* td_gemm.h's layout */
    const int8_t *input;
    int8_t *output;
    int8_t *scratch;                 /* 2 * depth bytes when accum_depth is not a multiple of 4
                                      * (rows are copied there, padded), else NULL */
} td_fully_connected_params_t;

void td_fully_connected_s8(const td_fully_connected_params_t *p);

#endif /* TD_FULLY_CONNECTED_H */
