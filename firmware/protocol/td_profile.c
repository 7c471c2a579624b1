/*
 * td_profile.c - the step table behind OP_TIMINGS (see td_profile.h). Compiled to nothing unless
 * the firmware is built with TD_PROFILE.
 *
 * Each mark reads td_hal_cycles() and td_hal_micros() once; a step stores the differences from the
 * mark before it, so no time between the first mark and the last goes uncounted (the reading and
 * storing itself lands in the next step). The table holds TD_PROFILE_MAX_STEPS steps: by default
 * the model's op count (TD_NUM_OPS from the generated model_settings.h), which bounds the steps of
 * either runtime; an inference with more steps counts them as dropped.
 */
#ifdef TD_PROFILE

#include "td_profile.h"

#include "td_hal.h"

#if !defined(TD_PROFILE_MAX_STEPS) && defined(__has_include)
#if __has_include("model_settings.h")
#include "model_settings.h"
#if defined(TD_NUM_OPS) && TD_NUM_OPS > 0
#define TD_PROFILE_MAX_STEPS TD_NUM_OPS
#endif
#endif
#endif
#ifndef TD_PROFILE_MAX_STEPS
#define TD_PROFILE_MAX_STEPS 64
#endif

typedef struct {
    uint32_t cycles;
    uint32_t micros;
    uint16_t op;
    uint8_t ops;
} td_step_t;

static td_step_t steps[TD_PROFILE_MAX_STEPS];
static uint16_t recorded;
static uint16_t dropped;
static uint32_t mark_cycles;
static uint32_t mark_micros;

void td_profile_begin(void)
{
    recorded = 0;
    dropped = 0;
    mark_cycles = td_hal_cycles();
    mark_micros = td_hal_micros();
}

void td_profile_step(uint16_t op, uint8_t ops)
{
    uint32_t cycles = td_hal_cycles();
    uint32_t micros = td_hal_micros();
    if (recorded < TD_PROFILE_MAX_STEPS) {
        td_step_t *s = &steps[recorded++];
        s->cycles = cycles - mark_cycles;
        s->micros = micros - mark_micros;
        s->op = op;
        s->ops = ops;
    } else if (dropped < UINT16_MAX) {
        dropped++;
    }
    mark_cycles = cycles;
    mark_micros = micros;
}

uint16_t td_profile_steps(void) { return recorded; }

uint16_t td_profile_dropped(void) { return dropped; }

int td_profile_get(uint16_t i, uint16_t *op, uint8_t *ops, uint32_t *cycles, uint32_t *micros)
{
    if (i >= recorded)
        return -1;
    *op = steps[i].op;
    *ops = steps[i].ops;
    *cycles = steps[i].cycles;
    *micros = steps[i].micros;
    return 0;
}

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int td_profile_disabled_t;
#endif /* TD_PROFILE */
