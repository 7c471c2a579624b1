#include "td_gemm.h"

#include <stddef.h>

#include "td_dsp.h"
#include "td_qmath.h"

/* Rows done per pass: their sums wait in a small buffer and are then requantized together. */
#define TD_GEMM_BLOCK 32

#if TD_DSP
/* Four weights of each row of a pair: two words from a 4-byte aligned address (the compiler
 * aligns the weights, td_gemm.h), the pointer moved on. GCC does not pair the two loads into
 * one LDRD by itself. */
static inline void load_row_pair(const int8_t **w, uint32_t *r0, uint32_t *r1)
{
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(*r0), "=r"(*r1), "+r"(*w));
}

/* s00 += x.row0, s01 += x.row1, s10 += y.row0, s11 += y.row1 over 4 elements */
#define TD_DOT_2X2_STEP()                                                          \
    do {                                                                           \
        uint32_t r0_, r1_;                                                         \
        const uint32_t x_ = td_load4(x0), y_ = td_load4(x1);                       \
        int32_t re_, ro_;                                                          \
        const int32_t xe_ = td_lanes02(x_), xo_ = td_lanes13(x_);                  \
        const int32_t ye_ = td_lanes02(y_), yo_ = td_lanes13(y_);                  \
        x0 += 4;                                                                   \
        x1 += 4;                                                                   \
        load_row_pair(&w, &r0_, &r1_);                                             \
        re_ = td_lanes02(r0_);                                                     \
        ro_ = td_lanes13(r0_);                                                     \
        s00 = __smlad(xe_, re_, __smlad(xo_, ro_, s00));                           \
        s10 = __smlad(ye_, re_, __smlad(yo_, ro_, s10));                           \
        re_ = td_lanes02(r1_);                                                     \
        ro_ = td_lanes13(r1_);                                                     \
        s01 = __smlad(xe_, re_, __smlad(xo_, ro_, s01));                           \
        s11 = __smlad(ye_, re_, __smlad(yo_, ro_, s11));                           \
    } while (0)
#endif

/*
 * s[0] += x0.row0, s[1] += x0.row1, s[2] += x1.row0, s[3] += x1.row1 for an interleaved row pair
 * at w (4 bytes of row0, 4 of row1, ...).
 */
static void dot_2x2(const int8_t *x0, const int8_t *x1, const int8_t *w, int32_t depth,
                    int32_t *s)
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
#if TD_DSP
    for (; depth > 0; depth -= 4) {
        TD_DOT_2X2_STEP();
    }
#else
    for (; depth > 0; depth -= 4, x0 += 4, x1 += 4, w += 8) {
        int32_t i;
        for (i = 0; i < 4; ++i) {
            s00 += x0[i] * w[i];
            s01 += x0[i] * w[4 + i];
            s10 += x1[i] * w[i];
            s11 += x1[i] * w[4 + i];
        }
    }
#endif
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}

/* s[0] += x.row0, s[1] += x.row1 for an interleaved row pair at w. */
static void dot_1x2(const int8_t *x, const int8_t *w, int32_t depth, int32_t *s)
{
    int32_t s0 = s[0], s1 = s[1];
    for (; depth > 0; depth -= 4, x += 4, w += 8) {
#if TD_DSP
        const uint32_t v = td_load4(x), r0 = td_load4(w), r1 = td_load4(w + 4);
        const int32_t ve = td_lanes02(v), vo = td_lanes13(v);
        s0 = __smlad(ve, td_lanes02(r0), __smlad(vo, td_lanes13(r0), s0));
        s1 = __smlad(ve, td_lanes02(r1), __smlad(vo, td_lanes13(r1), s1));
#else
        int32_t i;
        for (i = 0; i < 4; ++i) {
            s0 += x[i] * w[i];
            s1 += x[i] * w[4 + i];
        }
#endif
    }
    s[0] = s0;
    s[1] = s1;
}

/* s + x.row for a plain row at w. */
static int32_t dot_1x1(const int8_t *x, const int8_t *w, int32_t depth, int32_t s)
{
    for (; depth > 0; depth -= 4, x += 4, w += 4) {
#if TD_DSP
        const uint32_t v = td_load4(x), r = td_load4(w);
        s = __smlad(td_lanes02(v), td_lanes02(r), __smlad(td_lanes13(v), td_lanes13(r), s));
#else
        s += x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3];
#endif
    }
    return s;
}

/* Sums of rows [0, n) (n <= TD_GEMM_BLOCK) for x0 into sums[0] and for x1 (if any) into sums[1];
 * weights point at row 0, which starts a pair (the layout's pairs are absolute). */
static void block_sums(const int8_t *x0, const int8_t *x1, const int8_t *weights, int32_t depth,
                       const td_channel_t *c, int32_t n, int32_t sums[2][TD_GEMM_BLOCK])
{
    int32_t r;
    for (r = 0; r + 1 < n; r += 2, weights += 2 * depth) {
        if (x1 != NULL) {
            int32_t s[4] = {c[r].bias, c[r + 1].bias, c[r].bias, c[r + 1].bias};
            dot_2x2(x0, x1, weights, depth, s);
            sums[0][r] = s[0];
            sums[0][r + 1] = s[1];
            sums[1][r] = s[2];
            sums[1][r + 1] = s[3];
        } else {
            int32_t s[2] = {c[r].bias, c[r + 1].bias};
            dot_1x2(x0, weights, depth, s);
            sums[0][r] = s[0];
            sums[0][r + 1] = s[1];
        }
    }
    if (r < n) { /* an odd last row: plain */
        sums[0][r] = dot_1x1(x0, weights, depth, c[r].bias);
        if (x1 != NULL) {
            sums[1][r] = dot_1x1(x1, weights, depth, c[r].bias);
        }
    }
}

void td_gemm_s8(const int8_t *x0, const int8_t *x1, const int8_t *weights, int32_t depth,
                const td_channel_t *channels, int32_t rows, const td_output_t *o,
                int8_t *out0, int8_t *out1)
{
    int32_t sums[2][TD_GEMM_BLOCK];
    int32_t first;
    for (first = 0; first < rows; first += TD_GEMM_BLOCK) {
        const int32_t n = TD_MIN(TD_GEMM_BLOCK, rows - first);
        block_sums(x0, x1, weights + (size_t)first * depth, depth, channels + first, n, sums);
        td_requantize_channels(channels + first, n, o, sums[0], out0 + first);
        if (x1 != NULL) {
            td_requantize_channels(channels + first, n, o, sums[1], out1 + first);
        }
    }
}
