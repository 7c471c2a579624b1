/*
 * td_hal_arduino.cpp - td_hal.h over the Arduino core: the protocol's byte pipe is `Serial`
 * (native USB CDC or the UART behind a USB bridge, whichever the core maps to Serial) and the clock
 * is micros() plus, where the core can count them, CPU cycles.
 *
 * Cycle counting:
 *   - Cortex-M3/M4/M7/M33 (ARMv7-M, ARMv7E-M, ARMv8-M Mainline): the DWT cycle counter, enabled on
 *     first use. Its registers are architectural (ARMv7-M ARM, C1.8), so they are addressed directly
 *     rather than through a vendor CMSIS header each core names differently.
 *   - ESP32 / ESP32-S3 (Xtensa): the core's CCOUNT register, through ESP.getCycleCount().
 *   - Cortex-M0+ (RP2040) and anything else: 0, "cannot count".
 *
 * TD_SERIAL_BAUD comes from the generated platformio.ini (the board profile's [serial] baud).
 */
#include <Arduino.h>

#include "td_hal.h"

#ifndef TD_SERIAL_BAUD
#define TD_SERIAL_BAUD 115200
#endif

/* How long td_hal_init waits for a native-USB host to open the port before going on regardless. */
static const uint32_t kUsbWaitMs = 2000;

#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__)
#define TD_HAVE_DWT 1
#define TD_DEMCR (*(volatile uint32_t *)0xE000EDFCu)     /* Debug Exception and Monitor Control */
#define TD_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define TD_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define TD_DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)   /* lock access (Cortex-M7 keeps it locked) */
#define TD_DEMCR_TRCENA (1u << 24)
#define TD_DWT_CTRL_CYCCNTENA (1u << 0)
#define TD_DWT_UNLOCK_KEY 0xC5ACCE55u

/* The LAR unlock is needed on the Cortex-M7, whose DWT comes up software-locked; ARMv7-M makes the
 * software lock optional and the write is ignored where it is not implemented. */
static void enable_cycle_counter(void) {
    TD_DEMCR |= TD_DEMCR_TRCENA;
    TD_DWT_LAR = TD_DWT_UNLOCK_KEY;
    TD_DWT_CYCCNT = 0;
    TD_DWT_CTRL |= TD_DWT_CTRL_CYCCNTENA;
}
#endif

static bool g_started = false;

extern "C" void td_hal_init(void) {
    if (g_started) {
        return; /* idempotent: main() and the protocol may both call it */
    }
    g_started = true;
    Serial.begin(TD_SERIAL_BAUD);
    const uint32_t start = millis();
    while (!Serial && (uint32_t)(millis() - start) < kUsbWaitMs) {
        delay(10);
    }
#if defined(TD_HAVE_DWT)
    enable_cycle_counter();
#endif
}

extern "C" void td_hal_write(const uint8_t *buf, size_t n) {
    while (n > 0) {
        const size_t written = Serial.write(buf, n);
        buf += written;
        n -= written;
        if (written == 0) {
            yield(); /* USB CDC buffer full: let the core drain it */
        }
    }
}

extern "C" int td_hal_read_byte(uint32_t timeout_ms) {
    const uint32_t start = millis();
    do {
        if (Serial.available() > 0) {
            return Serial.read();
        }
        yield();
    } while ((uint32_t)(millis() - start) < timeout_ms);
    return -1;
}

extern "C" uint32_t td_hal_micros(void) {
    return (uint32_t)micros();
}

extern "C" uint32_t td_hal_cycles(void) {
#if defined(TD_HAVE_DWT)
    return TD_DWT_CYCCNT;
#elif defined(ARDUINO_ARCH_ESP32)
    return ESP.getCycleCount();
#else
    return 0;
#endif
}
