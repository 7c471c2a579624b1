/*
 * td_hal_host.c - td_hal.h on a desktop: the byte pipe is stdin/stdout, the clock is
 * CLOCK_MONOTONIC. Lets the real protocol code run as an ordinary process, so tests can fuzz it
 * under AddressSanitizer and put a fault-injecting proxy in front of it without any board or QEMU.
 *
 * End of input ends the process (exit 0): the "board" is switched off.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "td_hal.h"

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
            exit(0); /* the host went away */
        buf += w;
        n -= (size_t)w;
    }
}

int td_hal_read_byte(uint32_t timeout_ms)
{
    if (rx_pos == rx_len) {
        struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
        int ready = poll(&pfd, 1, (int)timeout_ms);
        if (ready == 0 || (ready < 0 && errno == EINTR))
            return -1;
        ssize_t r = read(STDIN_FILENO, rx_buf, sizeof rx_buf);
        if (r <= 0)
            exit(0);
        rx_len = (size_t)r;
        rx_pos = 0;
    }
    return rx_buf[rx_pos++];
}

uint32_t td_hal_micros(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

uint32_t td_hal_cycles(void) { return 0; }
