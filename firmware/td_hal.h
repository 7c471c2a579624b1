/*
 * td_hal.h - what the serial protocol needs from a board: a byte pipe and a clock.
 *
 * Implementations: firmware/hal/td_hal_arduino.cpp (Arduino Serial, real boards),
 * firmware/baremetal/<uart>.c (emulated boards' UARTs), and a host build for tests/fuzzing.
 */
#ifndef TD_HAL_H
#define TD_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void td_hal_init(void);
/* Blocking write of n bytes. */
void td_hal_write(const uint8_t *buf, size_t n);
/* Read one byte; returns -1 if none arrives within timeout_ms. */
int td_hal_read_byte(uint32_t timeout_ms);
/* Free-running microsecond clock (wraps at 2^32). */
uint32_t td_hal_micros(void);
/* Core cycle counter, or 0 when the board cannot count cycles. */
uint32_t td_hal_cycles(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_HAL_H */
