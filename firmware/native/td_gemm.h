/*
 * td_gemm.h - the int8 matrix product under CONV_2D and FULLY_CONNECTED: one or two input
 * vectors against every row of a weight matrix, each sum requantized to int8.
 *
 * A convolution gathers the input pixels under one output pixel's window into a vector (im2col,
 * td_conv.c), a fully connected layer takes an input row; both then need the dot product of that
 * vector with each filter. Doing two vectors at once lets every weight loaded serve twice.
 *
 * Layouts (made at build time by tinydeploy/native/ops.py, so the inner loop only streams):
 * - depth: the vector length rounded up to a multiple of 4 (weights padded with zeros, so
 *   whatever the vectors hold in the padding adds nothing);
 * - weights: rows in pairs (0,1), (2,3), ...; a pair is interleaved in 4-byte chunks: chunk 0 of
 *   the first row, chunk 0 of the second, chunk 1 of the first, ... An odd last row follows
 *   plainly. The array starts 4-byte aligned (every pair then does too), so the DSP path loads
 *   a chunk of both rows with one LDRD;
 * - vectors: plain, `depth` int8 each (readable up to depth even if the data is shorter);
 * - channels: per row, the bias with the input offset folded in (bias + input_offset * sum of the
 *   row's weights: the sum over the window of w * (x + input_offset) without the add per product)
 *   and the requantization multiplier and shift.
 */
#ifndef TD_GEMM_H
#define TD_GEMM_H

#include <stdint.h>

#include "td_qmath.h"

/*
 * The vectors x0 and x1 (x1 may be NULL: one vector) of `depth` int8 against `rows` weight rows;
 * the requantized results go to out0[0..rows) for x0 and out1[0..rows) for x1. Each output is
 * written only after both vectors are read for its row, in row order.
 */
void td_gemm_s8(const int8_t *x0, const int8_t *x1, const int8_t *weights, int32_t depth,
                const td_channel_t *channels, int32_t rows, const td_output_t *o,
                int8_t *out0, int8_t *out1);

#endif /* TD_GEMM_H */
