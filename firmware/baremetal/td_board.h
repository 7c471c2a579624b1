/*
 * td_board.h - what the bare-metal pieces (startup, SysTick clock, UART drivers, semihosting)
 * share. Only the emulated boards use these files; real boards run Arduino.
 */
#ifndef TD_BOARD_H
#define TD_BOARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_REG32(addr) (*(volatile uint32_t *)(addr))

/* Start the SysTick-based microsecond clock (td_hal_micros / td_hal_cycles). */
void td_clock_init(void);

/* Semihosting (needs QEMU's -semihosting-config enable=on): end the emulation with this exit
 * status, and print a line on QEMU's console. Never call them on real hardware without a debugger. */
void td_semihost_exit(int status) __attribute__((noreturn));
void td_semihost_puts(const char *text);

#ifdef __cplusplus
}
#endif

#endif /* TD_BOARD_H */
