/*
 * td_pool.h - int8 AVERAGE_POOL_2D and MAX_POOL_2D (NHWC), TFLM reference arithmetic.
 * Windows are clipped to the image: padding cells are neither summed nor counted.
 */
#ifndef TD_POOL_H
#define TD_POOL_H

#include <stdint.h>

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
    const int8_t *input;
    int8_t *output;
} td_pool_params_t;

/* Returns 0, or -1 if a window lies entirely in the padding (TFLM fails the op then too). */
int td_avg_pool_s8(const td_pool_params_t *p);
void td_max_pool_s8(const td_pool_params_t *p);

#endif /* TD_POOL_H */
