#include "td_concat.h"

#include <stddef.h>
#include <string.h>

void td_concat(int32_t num_inputs, const int8_t *const *inputs, const int32_t *copy_bytes,
               int32_t outer, int8_t *output)
{
    int32_t o, i;
    for (o = 0; o < outer; ++o) {
        for (i = 0; i < num_inputs; ++i) {
            const size_t n = (size_t)copy_bytes[i];
            memcpy(output, inputs[i] + (size_t)o * n, n);
            output += n;
        }
    }
}
