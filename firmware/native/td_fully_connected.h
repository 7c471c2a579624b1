/*
 * td_fully_connected.h - int8 FULLY_CONNECTED, per-tensor or per-channel weights, TFLM
 * reference arithmetic. Input is viewed as [batches, accum_depth], filter as
 * [out_depth, accum_depth], output as [batches, out_depth].
 */
#ifndef TD_FULLY_CONNECTED_H
#define TD_FULLY_CONNECTED_H

#include <stdint.h>

typedef struct {
    int32_t batches;
    int32_t accum_depth;
    int32_t out_depth;
    int32_t input_offset;            /* -input zero point */
    int32_t filter_offset;           /* -filter zero point (0 for int8 weights) */
    int32_t output_offset;           /* output zero point */
    int32_t act_min, act_max;
    int32_t per_channel;             /* 1: multiplier/shift have out_depth entries */
    const int32_t *multiplier;
    const int8_t *shift;             /* power-of-two exponents, -31..30 */
} td_fully_connected_params_t;

/* bias may be NULL. */
void td_fully_connected_s8(const td_fully_connected_params_t *p, const int8_t *input,
                           const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* TD_FULLY_CONNECTED_H */
