/*
 * tflm_port.cc - what the TFLM library expects of its platform, on the emulated boards.
 *
 * On a real board the Arduino library's system_setup.cpp prints TFLM's log through Serial and
 * peripherals/utility_arduino.cpp counts microseconds with micros(). Bare metal has no Arduino,
 * so: TFLM's log (MicroPrintf: "Failed to resize buffer ...") goes to the semihosting console,
 * which QEMU writes to its log, never to the UART that carries the protocol; the microsecond
 * counter is the board's SysTick clock. The C++ runtime pieces are those of a firmware without a
 * heap or exceptions: TFLM objects live in static storage and in the arena and are never deleted.
 */
#include <stddef.h>
#include <stdint.h>

#include "td_board.h"
#include "td_hal.h"

extern "C" void DebugLog(const char *s) { td_semihost_puts(s); }

namespace peripherals {
uint32_t MicrosecondsCounter() { return td_hal_micros(); }
}  // namespace peripherals

extern "C" void __cxa_pure_virtual(void)
{
    td_semihost_puts("tinydeploy: pure virtual function called\n");
    td_semihost_exit(134);
}

/* Referenced by the deleting destructors of TFLM's classes with virtual destructors; never called. */
void operator delete(void *) noexcept {}
void operator delete(void *, size_t) noexcept {}

/* Handle of this "shared object" for __cxa_atexit (normally from crtbegin.o, which -nostartfiles
 * leaves out). Static destructors never run: the firmware never returns from main(). */
extern "C" {
void *__dso_handle = nullptr;
int __cxa_atexit(void (*)(void *), void *, void *) { return 0; }
}
