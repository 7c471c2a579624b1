/*
 * td_clock.c - td_hal_micros() and td_hal_cycles() from the Cortex-M SysTick timer.
 *
 * SysTick counts the processor clock (CLKSOURCE = 1) down from a reload value; each wrap raises
 * SysTick_Handler, which adds the period to a 32-bit cycle count. Under QEMU's `-icount shift=0`
 * the timer follows virtual time (1 ns per instruction), so both clocks are deterministic.
 * TD_SYSTICK_HZ is the frequency QEMU gives the machine's SysTick processor clock (measured with
 * tests/device/test_qemu.py::test_systick_rate), passed in by tinydeploy/baremetal.py.
 */
#include "td_board.h"
#include "td_hal.h"

#ifndef TD_SYSTICK_HZ
#error "define TD_SYSTICK_HZ (the SysTick processor-clock frequency of the board)"
#endif

#define SYST_CSR 0xE000E010u
#define SYST_RVR 0xE000E014u
#define SYST_CVR 0xE000E018u
#define SYST_CSR_ENABLE_TICKINT_CLKSOURCE 0x7u

/* SysTick's whole 24-bit range per wrap: the interrupt is rare, and every reading lands well within
 * one period of the one before it (a period is 0.67 s of virtual time at 25 MHz), which is what
 * lets now() repair the readings QEMU gets wrong. */
#define PERIOD_TICKS (1u << 24)

static volatile uint64_t wrapped_ticks; /* ticks of the periods that ended, added by the interrupt */

void SysTick_Handler(void) { wrapped_ticks += PERIOD_TICKS; }

void td_clock_init(void)
{
    TD_REG32(SYST_RVR) = PERIOD_TICKS - 1u;
    TD_REG32(SYST_CVR) = 0;
    TD_REG32(SYST_CSR) = SYST_CSR_ENABLE_TICKINT_CLKSOURCE;
}

/* Ticks since td_clock_init(), never going back. QEMU reloads the counter on time but delivers the
 * wrap's interrupt late (later still on a busy host), so for a moment the counter has started a
 * new period while wrapped_ticks still counts the old one, and the clock would read a whole period
 * behind. A reading that falls less than one period behind the previous one can only be that, and
 * gets the period back; since readings come much more often than once a period (the UART is polled
 * between requests), no such moment goes unseen. The reads are repeated if the interrupt ran in
 * between them. Thread mode only. */
static uint64_t now(void)
{
    static uint64_t last;
    uint64_t base;
    uint32_t left;
    do {
        base = wrapped_ticks;
        left = TD_REG32(SYST_CVR);
    } while (base != wrapped_ticks);
    uint64_t ticks = base + (PERIOD_TICKS - 1u - left);
    if (ticks < last && last - ticks <= PERIOD_TICKS)
        ticks += PERIOD_TICKS;
    if (ticks > last)
        last = ticks;
    return ticks;
}

uint32_t td_hal_cycles(void)
{
    return (uint32_t)now();
}

/* Microseconds per tick in 32.32 fixed point: a multiply instead of a 64-bit division, which is a
 * slow library call on these cores and td_hal_micros() runs in the UART's polling loop. */
#define MICROS_PER_TICK_Q32 ((uint64_t)((1000000ull << 32) / TD_SYSTICK_HZ))

uint32_t td_hal_micros(void)
{
    uint64_t ticks = now();
    uint64_t high = (ticks >> 32) * MICROS_PER_TICK_Q32;
    uint64_t low = ((ticks & 0xFFFFFFFFu) * MICROS_PER_TICK_Q32) >> 32;
    return (uint32_t)(high + low);
}
