/*
 * td_pad.h - PAD / PADV2 for any element size: copies the input into the middle of the output
 * and fills the border with the padding value (the output zero point for int8 PAD).
 * Shapes are right-aligned to TD_PAD_MAX_DIMS dimensions by the compiler.
 */
#ifndef TD_PAD_H
#define TD_PAD_H

#include <stdint.h>

#define TD_PAD_MAX_DIMS 6

typedef struct {
    int32_t in_dims[TD_PAD_MAX_DIMS];
    int32_t out_dims[TD_PAD_MAX_DIMS];
    int32_t before[TD_PAD_MAX_DIMS];   /* padding inserted before each dimension */
    int32_t pad_value;
    const int8_t *input;
    int8_t *output;
} td_pad_params_t;

void td_pad_s8(const td_pad_params_t *p);

#endif /* TD_PAD_H */
