/*
 * td_softmax.h - int8 SOFTMAX of the native runtime, bit-exact with TFLite Micro's reference
 * kernel (gemmlowp fixed-point exp, Newton-Raphson reciprocal).
 *
 * Depends on td_activation.c for the shared fixed-point primitives (td_fx_*): build both.
 * The parameter struct is filled at build time by tinydeploy/native/fixedpoint.py
 * (softmax_params), which mirrors TFLM's SoftmaxPrepare; its dict has exactly these field names.
 */
#ifndef TD_SOFTMAX_H
#define TD_SOFTMAX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Input differences from the row maximum are scaled by beta * input_scale into Q5.26 before exp.
 * The output is always quantized with scale 1/256 and zero point -128 (TFLM requires both). */
typedef struct {
    int32_t input_multiplier; /* Q0.31 mantissa of beta * input_scale * 2^26 */
    int32_t input_left_shift; /* its exponent, >= 0 */
    int32_t diff_min;         /* differences below this (<= 0) contribute nothing; output -128 */
} td_softmax_params_t;

/* Softmax over the last dimension: input and output are outer_size rows of depth int8 values,
 * row-major. input and output must not overlap. depth must be >= 1, and the sum of exp(scaled
 * difference from the row maximum) over a row must stay below 256 (always true for depth < 256;
 * TFLM aborts on such rows, so they are outside the bit-exact domain). */
void td_softmax_s8(const td_softmax_params_t *params, const int8_t *input, int8_t *output,
                   size_t outer_size, size_t depth);

#ifdef __cplusplus
}
#endif

#endif /* TD_SOFTMAX_H */
