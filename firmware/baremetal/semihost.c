/*
 * semihost.c - the two Arm semihosting calls the emulated boards need: SYS_WRITE0 (print a
 * string) and SYS_EXIT_EXTENDED (stop QEMU with an exit status). A semihosting call is a
 * "bkpt 0xAB" with the operation in r0 and its argument in r1 (Arm semihosting spec, M-profile).
 */
#include "td_board.h"

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int semihost_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void td_semihost_puts(const char *text) { (void)semihost_call(SYS_WRITE0, text); }

void td_semihost_exit(int status)
{
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    (void)semihost_call(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}
