/* Host harness for firmware/hal/td_hal_arduino.cpp against stubs/arduino/Arduino.h: a fake Serial
 * with an RX queue and a TX log, and a clock that advances 1 ms per millis() call so timeouts end.
 * Prints "ok" if every check passed. */
#include <Arduino.h>

#include <cstdio>
#include <cstring>

#include "td_hal.h"

StubSerial Serial;
static unsigned long begin_calls, begin_baud, now_ms;
static uint8_t tx[64], rx[8];
static size_t tx_len, rx_len, rx_pos;

void StubSerial::begin(unsigned long baud) { ++begin_calls; begin_baud = baud; }
StubSerial::operator bool() const { return true; }
size_t StubSerial::write(const uint8_t *buf, size_t n) {
    const size_t chunk = n > 3 ? 3 : n; /* accept at most 3 bytes a call, like a full USB buffer */
    std::memcpy(tx + tx_len, buf, chunk);
    tx_len += chunk;
    return chunk;
}
int StubSerial::available() { return static_cast<int>(rx_len - rx_pos); }
int StubSerial::read() { return rx_pos < rx_len ? rx[rx_pos++] : -1; }
unsigned long millis(void) { return ++now_ms; }
unsigned long micros(void) { return now_ms * 1000u; }
void delay(unsigned long ms) { now_ms += ms; }
void yield(void) {}
#if defined(ARDUINO_ARCH_ESP32)
StubEsp ESP;
uint32_t StubEsp::getCycleCount() { return 12345u; }
#endif

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
    CHECK(begin_calls == 1 && begin_baud == TD_SERIAL_BAUD);

    const uint8_t frame[7] = {0xA5, 0x5A, 1, 2, 3, 4, 5};
    td_hal_write(frame, sizeof frame);
    CHECK(tx_len == sizeof frame && std::memcmp(tx, frame, sizeof frame) == 0);

    rx[0] = 0x42;
    rx_len = 1;
    CHECK(td_hal_read_byte(10) == 0x42);
    const unsigned long before = now_ms;
    CHECK(td_hal_read_byte(50) == -1);
    CHECK(now_ms - before >= 50 && now_ms - before < 60);

#if defined(ARDUINO_ARCH_ESP32)
    CHECK(td_hal_cycles() == 12345u);
#else
    CHECK(td_hal_cycles() == 0);
#endif
    CHECK(td_hal_micros() == now_ms * 1000u);
    if (failures == 0) std::printf("ok\n");
    return failures == 0 ? 0 : 1;
}
