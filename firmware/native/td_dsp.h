/*
 * td_dsp.h - which arithmetic path the kernels take, and the helpers both paths share.
 *
 * Cores with the Armv7E-M DSP extension (Cortex-M4, M7, M33/M55 with DSP) define
 * __ARM_FEATURE_DSP. There the kernels use the ACLE intrinsics of arm_acle.h on four int8 lanes
 * held in one 32-bit word: __sxtb16 sign-extends lanes 0 and 2 to two int16 halves, __smlad
 * multiplies two int16 pairs and adds both products to an accumulator (two multiply-adds in one
 * instruction), __sxtab16 does the widening and adds a constant pair (an input offset) on the way.
 * Every other core - and any build with -DTD_NO_DSP - runs the portable C path. Both paths add the
 * same integer products in int32, so they produce the same bits (tests/native checks both).
 */
#ifndef TD_DSP_H
#define TD_DSP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP == 1 && !defined(TD_NO_DSP)
#define TD_DSP 1
#include <arm_acle.h>
#else
#define TD_DSP 0
#endif

/* Keeps a hot loop in a function of its own, where the register allocator gives it every register
 * (inlined into its caller's big loop nest, its sums would be spilled to the stack). */
#if defined(__GNUC__)
#define TD_NOINLINE __attribute__((noinline))
#else
#define TD_NOINLINE
#endif


/* Four int8 lanes from any address, as one word (lane 0 in the low byte on little-endian cores).
 * memcpy is the portable spelling; on Armv7-M it compiles to a single (unaligned) LDR. */
static inline uint32_t td_load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void td_store4(int8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

#if TD_DSP
/* Lanes 0 and 2 of four int8, sign-extended: the int16 pair (b0, b2). */
static inline int32_t td_lanes02(uint32_t w)
{
    return __sxtb16((int32_t)w);
}

/* Lanes 1 and 3: the int16 pair (b1, b3). SXTB16 can rotate its operand by 8 bits for free;
 * arm_acle.h has no rotated form (and GCC does not fold a separate rotate into it). */
static inline int32_t td_lanes13(uint32_t w)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* (b0 + o, b2 + o) and (b1 + o, b3 + o) for an offset pair o = (offset, offset). */
static inline int32_t td_lanes02_plus(uint32_t w, int32_t offset_pair)
{
    return __sxtab16(offset_pair, (int32_t)w);
}

static inline int32_t td_lanes13_plus(uint32_t w, int32_t offset_pair)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(offset_pair), "r"(w));
    return r;
}

/* The same int16 value in both halves of a word (an offset pair for td_lanes*_plus). */
static inline int32_t td_pair16(int32_t v)
{
    return (int32_t)(((uint32_t)v & 0xFFFFu) * 0x00010001u);
}
#endif

/* (a * b + 2^31) >> 32: the high word of a product, rounded (SMMULR on the DSP path). */
static inline int32_t td_mul_high_round(int32_t a, int32_t b)
{
#if TD_DSP
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

#endif /* TD_DSP_H */
