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

/* One wrap per millisecond keeps the interrupt rare and both clocks exact modulo 2^32. */
#define TICKS_PER_MS (TD_SYSTICK_HZ / 1000u)

static volatile uint32_t elapsed_ms;

void SysTick_Handler(void) { elapsed_ms++; }

void td_clock_init(void)
{
    TD_REG32(SYST_RVR) = TICKS_PER_MS - 1u;
    TD_REG32(SYST_CVR) = 0;
    TD_REG32(SYST_CSR) = SYST_CSR_ENABLE_TICKINT_CLKSOURCE;
}

/* Ticks since td_clock_init(), never going back. The counter can have wrapped before its
 * interrupt has run (QEMU delivers a due timer interrupt late, later still on a busy host, and
 * raises PENDSTSET only then): elapsed_ms is then one behind a counter that started again from the
 * top, and the clock would step back by up to a millisecond (seen 24 times in 30 validations). A
 * reading that lands less than one period behind the previous one can only be that: one period is
 * added. The reads are repeated if the interrupt ran in between them. Thread mode only. */
static uint64_t now(void)
{
    static uint64_t last;
    uint32_t ms, left;
    do {
        ms = elapsed_ms;
        left = TD_REG32(SYST_CVR);
    } while (ms != elapsed_ms);
    uint64_t ticks = (uint64_t)ms * TICKS_PER_MS + (TICKS_PER_MS - 1u - left);
    if (ticks < last && last - ticks <= TICKS_PER_MS)
        ticks += TICKS_PER_MS;
    if (ticks > last)
        last = ticks;
    return ticks;
}

uint32_t td_hal_cycles(void)
{
    return (uint32_t)now();
}

uint32_t td_hal_micros(void)
{
    uint64_t ticks = now();
    uint32_t ms = (uint32_t)(ticks / TICKS_PER_MS), rest = (uint32_t)(ticks % TICKS_PER_MS);
    return ms * 1000u + rest * 1000u / TICKS_PER_MS; /* rest < TICKS_PER_MS: no overflow */
}
