/*
 * glitchy_clock_hal.c - td_hal.h on a desktop (stdin/stdout, like firmware/hal/td_hal_host.c) whose
 * clock and byte reads behave like the emulated boards':
 *
 *  - td_hal_micros() steps back by 1 ms during the first TD_GLITCH_US microseconds of every
 *    millisecond. That is what the bare-metal SysTick clock (firmware/baremetal/td_clock.c) does
 *    under QEMU: the counter has already wrapped when the guest reads it, but the wrap interrupt
 *    that bumps the millisecond count has not run yet (QEMU runs it later, much later on a busy
 *    host). Measured on qemu-m4: ~1 backward step of 998-999 us per 6 KB received.
 *  - td_hal_read_byte() polls for a byte and gives up when `now - start >= timeout` in unsigned
 *    arithmetic, exactly like firmware/baremetal/uart_cmsdk.c, so a backward step makes it return
 *    "no byte" at once.
 *
 * A protocol that trusts that "no byte" drops whole, healthy frames as timed out.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "td_hal.h"

#ifndef TD_GLITCH_US
#define TD_GLITCH_US 250u
#endif

static uint8_t rx_buf[4096];
static size_t rx_len, rx_pos;

void td_hal_init(void) { rx_len = rx_pos = 0; }

void td_hal_write(const uint8_t *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            exit(0);
        buf += w;
        n -= (size_t)w;
    }
}

uint32_t td_hal_micros(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (us % 1000u < TD_GLITCH_US && us >= 1000u)
        us -= 1000u; /* the millisecond count lags the wrapped sub-millisecond counter */
    return (uint32_t)us;
}

uint32_t td_hal_cycles(void) { return 0; }

/* Is a byte there (refilling the buffer without blocking)? Exits when the host closed the line. */
static int byte_ready(void)
{
    if (rx_pos < rx_len)
        return 1;
    struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
    if (poll(&pfd, 1, 0) <= 0)
        return 0;
    ssize_t r = read(STDIN_FILENO, rx_buf, sizeof rx_buf);
    if (r <= 0)
        exit(0);
    rx_len = (size_t)r;
    rx_pos = 0;
    return 1;
}

int td_hal_read_byte(uint32_t timeout_ms)
{
    const struct timespec nap = {0, 20000}; /* 20 us between polls, like a UART status loop */
    uint32_t start = td_hal_micros();
    while (!byte_ready()) {
        if (td_hal_micros() - start >= timeout_ms * 1000u)
            return -1;
        nanosleep(&nap, NULL);
    }
    return rx_buf[rx_pos++];
}
