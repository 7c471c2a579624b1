/* clock_probe.c - firmware for tests/device/test_clock.py: reads td_hal_micros() and
 * td_hal_cycles() three million times and counts every step back (semihosting prints the counts;
 * the exit status is nonzero when there was one). */
#include "td_board.h"
#include "td_hal.h"

static void report(const char *key, uint32_t value)
{
    char line[48];
    char digits[12];
    int n = 0, m = 0;
    while (*key != '\0')
        line[n++] = *key++;
    do {
        digits[m++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (m > 0)
        line[n++] = digits[--m];
    line[n++] = '\n';
    line[n] = '\0';
    td_semihost_puts(line);
}

int main(void)
{
    td_clock_init();
    uint32_t last_us = td_hal_micros(), last_cycles = td_hal_cycles();
    uint32_t us_back = 0, cycles_back = 0;
    for (uint32_t i = 0; i < 3000000u; i++) {
        uint32_t us = td_hal_micros(), cycles = td_hal_cycles();
        us_back += us < last_us;
        cycles_back += cycles < last_cycles;
        last_us = us;
        last_cycles = cycles;
    }
    report("micros_back=", us_back);
    report("cycles_back=", cycles_back);
    report("micros_end=", last_us);
    return us_back == 0 && cycles_back == 0 ? 0 : 1;
}
