/*
 * td_qmath.c - the helpers several kernel families share, compiled once (see td_qmath.h).
 */
#include "td_qmath.h"

#include <stddef.h>

void td_requantize_channels(const td_channel_t *ch, int32_t n, const td_output_t *o,
                            const int32_t *acc, int8_t *out)
{
    const int32_t offset = o->offset, lo = o->act_min, hi = o->act_max;
    int32_t i, v;
    if (o->narrow) {
        for (i = 0; i < n; ++i) {
            v = td_requantize_narrow(acc[i], ch[i].multiplier, ch[i].right_shift);
            out[i] = (int8_t)td_clamp(v + offset, lo, hi);
        }
    } else {
        for (i = 0; i < n; ++i) {
            const int32_t right = ch[i].right_shift;
            v = td_requantize(acc[i], ch[i].multiplier, ch[i].left_shift, right,
                              (1u << right) >> 1);
            out[i] = (int8_t)td_clamp(v + offset, lo, hi);
        }
    }
}

void td_copy_s8(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        td_store4(dst, td_load4(src));
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

void td_fill_s8(int8_t *dst, int8_t value, int32_t n)
{
    const uint32_t word = (uint32_t)(uint8_t)value * 0x01010101u;
    for (; n >= 4; n -= 4, dst += 4) {
        td_store4(dst, word);
    }
    for (; n > 0; --n) {
        *dst++ = value;
    }
}
