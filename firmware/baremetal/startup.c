/*
 * startup.c - reset and exception vectors for the emulated Cortex-M3/M4 boards.
 *
 * Reset copies .data from flash, zeroes .bss, turns the FPU on when the build uses it (M4F), and
 * calls main(). A fault ends the emulation through semihosting with exit status 3, so a crashing
 * firmware shows up as a stopped QEMU with a message instead of a silent hang.
 */
#include <stdint.h>

#include "td_board.h"

/* Symbols from the linker script (link.ld.j2). */
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;

int main(void);
void Reset_Handler(void);
void SysTick_Handler(void); /* td_clock.c */

#define TD_EXIT_FAULT 3
#define SCB_CPACR 0xE000ED88u

static void fault_handler(void)
{
    td_semihost_puts("tinydeploy: CPU fault, stopping\n");
    td_semihost_exit(TD_EXIT_FAULT);
}

static void unused_handler(void)
{
    td_semihost_puts("tinydeploy: unexpected interrupt, stopping\n");
    td_semihost_exit(TD_EXIT_FAULT);
}

typedef void (*vector_fn)(void);

/* Cortex-M core vectors; the boards' peripheral IRQs are not used (the UARTs are polled). */
__attribute__((section(".vectors"), used)) static const vector_fn vectors[16] = {
    (vector_fn)(uintptr_t)&__stack_top,
    Reset_Handler,
    unused_handler, /* NMI */
    fault_handler,  /* HardFault */
    fault_handler,  /* MemManage */
    fault_handler,  /* BusFault */
    fault_handler,  /* UsageFault */
    0, 0, 0, 0,
    unused_handler, /* SVCall */
    unused_handler, /* DebugMonitor */
    0,
    unused_handler, /* PendSV */
    SysTick_Handler,
};

void Reset_Handler(void)
{
    uint32_t *src = &__data_load;
    for (uint32_t *dst = &__data_start; dst < &__data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
#if defined(__ARM_FP)
    TD_REG32(SCB_CPACR) |= 0xFu << 20; /* CP10 and CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    td_semihost_exit(main());
}
