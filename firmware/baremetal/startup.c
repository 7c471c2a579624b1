/*
 * startup.c - reset and exception vectors for the emulated Cortex-M3/M4 boards.
 *
 * Reset copies .data from flash, zeroes .bss, turns the FPU on when the build uses it (M4F), runs
 * the static constructors (.preinit_array, .init_array: C++ globals, e.g. TFLM's), and calls main().
 * A fault ends the emulation through semihosting with exit status 3, so a crashing firmware shows
 * up as a stopped QEMU with a message instead of a silent hang.
 *
 * Flash is read-only, as on the real parts: QEMU's MPS2 machines have RAM where the boards have
 * flash, so without this a write through a null pointer would silently rewrite the vector table
 * and the code. The MPU maps the FLASH region read-only (every other address keeps the default
 * map), so such a write is a MemManage fault, reported like any other.
 *
 * A firmware may take over faults by defining td_fault_recover(): it gets the stacked exception
 * frame (r0-r3, r12, lr, pc, xpsr) and returns nonzero after redirecting pc to resume somewhere
 * safe (the TFLM arena measurement uses it to survive TFLM's null writes in arenas that are too
 * small).
 */
#include <stdint.h>

#include "td_board.h"

/* Symbols from the linker script (link.ld.j2). */
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern uint32_t __flash_start[], __flash_end[];
typedef void (*init_fn)(void);
extern init_fn __preinit_array_start[], __preinit_array_end[], __init_array_start[], __init_array_end[];

int main(void);
void Reset_Handler(void);
void SysTick_Handler(void); /* td_clock.c */

#define TD_EXIT_FAULT 3
#define SCB_CPACR 0xE000ED88u
#define SCB_SHCSR 0xE000ED24u
#define SCB_SHCSR_MEMFAULTENA (1u << 16)
#define MPU_TYPE 0xE000ED90u
#define MPU_CTRL 0xE000ED94u
#define MPU_RNR 0xE000ED98u
#define MPU_RBAR 0xE000ED9Cu
#define MPU_RASR 0xE000EDA0u
#define MPU_CTRL_ENABLE_PRIVDEFENA 0x5u
#define MPU_RASR_READ_ONLY (0x6u << 24) /* AP = 0b110: read-only, privileged and not */
#define MPU_RASR_NORMAL_CACHED (0x1u << 17) /* TEX 0, C 1, B 0: normal memory, write-through */

int td_fault_recover(uint32_t *frame) __attribute__((weak));

/* Called by fault_handler with the stacked frame; returning resumes the (possibly redirected) code. */
__attribute__((used)) static void fault_dispatch(uint32_t *frame)
{
    if (td_fault_recover != 0 && td_fault_recover(frame))
        return;
    td_semihost_puts("tinydeploy: CPU fault, stopping\n");
    td_semihost_exit(TD_EXIT_FAULT);
}

/* Hands fault_dispatch the frame of the stack the fault was taken on (MSP or PSP); its return
 * is the exception return, since lr still holds EXC_RETURN. */
__attribute__((naked)) static void fault_handler(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "b fault_dispatch\n\t");
}

/* Map the FLASH region read-only (the smallest power of two covering it); see the file comment. */
static void protect_flash(void)
{
    if (((TD_REG32(MPU_TYPE) >> 8) & 0xFFu) == 0)
        return; /* no MPU regions on this core */
    uint32_t length = (uint32_t)((uintptr_t)__flash_end - (uintptr_t)__flash_start);
    uint32_t log2 = 5; /* the MPU's smallest region is 32 bytes */
    while ((1u << log2) < length && log2 < 31)
        log2++;
    TD_REG32(MPU_RNR) = 0;
    TD_REG32(MPU_RBAR) = (uint32_t)(uintptr_t)__flash_start & ~((1u << log2) - 1u);
    TD_REG32(MPU_RASR) = MPU_RASR_READ_ONLY | MPU_RASR_NORMAL_CACHED | ((log2 - 1u) << 1) | 1u;
    TD_REG32(SCB_SHCSR) |= SCB_SHCSR_MEMFAULTENA;
    TD_REG32(MPU_CTRL) = MPU_CTRL_ENABLE_PRIVDEFENA;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
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
    protect_flash();
    for (init_fn *fn = __preinit_array_start; fn < __preinit_array_end; fn++)
        (*fn)();
    for (init_fn *fn = __init_array_start; fn < __init_array_end; fn++)
        (*fn)();
    td_semihost_exit(main());
}
