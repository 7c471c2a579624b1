/*
 * td_elementwise.h - int8 ADD and MUL with numpy-style broadcasting, TFLM reference arithmetic.
 *
 * Shapes are right-aligned to TD_ELEMENTWISE_MAX_DIMS dimensions by the compiler; an input's
 * stride is 0 along a dimension it is broadcast over.
 */
#ifndef TD_ELEMENTWISE_H
#define TD_ELEMENTWISE_H

#include <stdint.h>

#include "td_rows.h"

#define TD_ELEMENTWISE_MAX_DIMS 6

typedef struct {
    int32_t out_dims[TD_ELEMENTWISE_MAX_DIMS];
    int32_t in1_strides[TD_ELEMENTWISE_MAX_DIMS];
    int32_t in2_strides[TD_ELEMENTWISE_MAX_DIMS];
    int32_t broadcast;               /* 0: both inputs have the output's shape */
} td_broadcast_t;

typedef struct {
    td_broadcast_t shape;
    int32_t input1_offset, input2_offset;   /* -zero points */
    int32_t output_offset;
    int32_t left_shift;                     /* 20 for int8 */
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    /* 1: the compiler proved the rescaled sum narrow (|sum << output left shift| < 2^30 for
     * every pair of inputs): td_requantize_narrow applies (the inputs' rescaling always is). */
    int32_t narrow;
    td_rows_t input1, input2, output;   /* rings only without broadcasting (streamed chains) */
} td_add_params_t;

typedef struct {
    td_broadcast_t shape;
    int32_t input1_offset, input2_offset;
    int32_t output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    const int8_t *input1, *input2;
    int8_t *output;
} td_mul_params_t;

void td_add_s8(const td_add_params_t *p);
/* Output row `row` alone (no broadcasting): a stage of a streamed chain (td_stream.h). */
void td_add_row_s8(const void *params, int32_t row);
void td_mul_s8(const td_mul_params_t *p);

#endif /* TD_ELEMENTWISE_H */
