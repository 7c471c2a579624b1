/* Host harness for firmware/hal/td_hal_arduino.cpp against stubs/arduino (see README.md).
 * Prints "ok" if every check passed. */
#include <Arduino.h>

#include <cstdio>
#include <cstring>

#include "td_hal.h"

static int failures = 0;
#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            std::printf("FAILED line %d: %s\n", __LINE__, #cond);         \
            ++failures;                                                   \
        }                                                                 \
    } while (0)

int main(void) {
    td_hal_init();
    td_hal_init();
    CHECK(stub::begin_calls == 1 && stub::begin_baud == TD_SERIAL_BAUD);

    const uint8_t frame[7] = {0xA5, 0x5A, 1, 2, 3, 4, 5};
    td_hal_write(frame, sizeof frame); /* the stub takes 3 bytes a call: the HAL must loop */
    CHECK(stub::tx_len == sizeof frame && std::memcmp(stub::tx, frame, sizeof frame) == 0);

    const uint8_t byte = 0x42;
    stub::queue_rx(&byte, 1);
    CHECK(td_hal_read_byte(10) == 0x42);
    const unsigned long before = stub::now_ms;
    CHECK(td_hal_read_byte(50) == -1);
    CHECK(stub::now_ms - before >= 50 && stub::now_ms - before < 60);

#if defined(ARDUINO_ARCH_ESP32)
    CHECK(td_hal_cycles() == 12345u);
#else
    CHECK(td_hal_cycles() == 0);
#endif
    CHECK(td_hal_micros() == stub::now_ms * 1000u);
    if (failures == 0) std::printf("ok\n");
    return failures == 0 ? 0 : 1;
}
