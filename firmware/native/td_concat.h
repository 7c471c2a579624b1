/*
 * td_concat.h - CONCATENATION: a pure byte copy, as in TFLM, whose int8 kernel never rescales
 * (the converter gives every input the output's quantization). Each input is seen as
 * [outer, copy_bytes[i]].
 */
#ifndef TD_CONCAT_H
#define TD_CONCAT_H

#include <stdint.h>

void td_concat(int32_t num_inputs, const int8_t *const *inputs, const int32_t *copy_bytes,
               int32_t outer, int8_t *output);

#endif /* TD_CONCAT_H */
