/*
 * td_mean.h - int8 MEAN over any set of axes (global average pooling is axes {1, 2}),
 * TFLM reference arithmetic.
 *
 * The compiler splits the input dimensions into kept ones (one output element per index) and
 * reduced ones (summed), each with its element stride in the input; dimensions are padded with
 * size 1 to TD_MEAN_MAX_DIMS.
 */
#ifndef TD_MEAN_H
#define TD_MEAN_H

#include <stdint.h>

#define TD_MEAN_MAX_DIMS 6

typedef struct {
    int32_t kept_dims[TD_MEAN_MAX_DIMS];
    int32_t kept_strides[TD_MEAN_MAX_DIMS];
    int32_t reduced_dims[TD_MEAN_MAX_DIMS];
    int32_t reduced_strides[TD_MEAN_MAX_DIMS];
    int32_t count;                   /* number of elements averaged per output */
    /* same_quantization: input and output share scale and zero point; TFLM then divides the
     * raw sum with truncation. Otherwise it rescales with multiplier/shift, which already
     * include the 1/count factor. */
    int32_t same_quantization;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier, shift;
    const int8_t *input;
    int8_t *output;
} td_mean_params_t;

void td_mean_s8(const td_mean_params_t *p);

#endif /* TD_MEAN_H */
