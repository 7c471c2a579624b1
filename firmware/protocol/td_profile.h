/*
 * td_profile.h - per-step timings of the last inference, the device side of OP_TIMINGS
 * (firmware/PROTOCOL.md).
 *
 * Only in firmware built with TD_PROFILE defined. A runtime marks the start of an inference
 * (td_profile_begin) and the end of each step it runs (td_profile_step: the index of the model op
 * the step starts at, and how many consecutive ops it runs - the native runtime's row streams run
 * several). A step's time runs from the previous mark to its own, so the steps of one inference
 * add up to the time between the first mark and the last. td_link.c reads the table back.
 *
 * Without TD_PROFILE nothing here is compiled and td_link.c answers OP_TIMINGS with UNSUPPORTED:
 * the default firmware is the same code, size and speed as before profiling existed.
 */
#ifndef TD_PROFILE_H
#define TD_PROFILE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start of an inference: forget the previous one's steps and take the first mark. */
void td_profile_begin(void);
/* End of a step that ran `ops` ops from model op `op` on: record the time since the last mark. */
void td_profile_step(uint16_t op, uint8_t ops);

/* Steps recorded by the last inference, and steps it ran beyond the table (not recorded). */
uint16_t td_profile_steps(void);
uint16_t td_profile_dropped(void);
/* Step i of the last inference (i < td_profile_steps()); returns 0, or -1 for a bad index. */
int td_profile_get(uint16_t i, uint16_t *op, uint8_t *ops, uint32_t *cycles, uint32_t *micros);

#ifdef __cplusplus
}
#endif

#endif /* TD_PROFILE_H */
