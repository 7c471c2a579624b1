/* Test stub (see tests/stubs/README.md): implementation of stubs/arduino/Arduino.h. */
#include <Arduino.h>

#include <cstring>

StubSerial Serial;

namespace stub {
unsigned long begin_calls, begin_baud, now_ms;
uint8_t tx[256];
size_t tx_len;
static uint8_t rx[256];
static size_t rx_len, rx_pos;

void queue_rx(const uint8_t *bytes, size_t n) {
    std::memcpy(rx + rx_len, bytes, n);
    rx_len += n;
}
}  // namespace stub

void StubSerial::begin(unsigned long baud) {
    ++stub::begin_calls;
    stub::begin_baud = baud;
}
StubSerial::operator bool() const { return true; }
size_t StubSerial::write(const uint8_t *buf, size_t n) {
    size_t chunk = n > 3 ? 3 : n;
    if (stub::tx_len + chunk > sizeof stub::tx) chunk = sizeof stub::tx - stub::tx_len;
    std::memcpy(stub::tx + stub::tx_len, buf, chunk);
    stub::tx_len += chunk;
    return chunk;
}
int StubSerial::available() { return static_cast<int>(stub::rx_len - stub::rx_pos); }
int StubSerial::read() { return stub::rx_pos < stub::rx_len ? stub::rx[stub::rx_pos++] : -1; }

unsigned long millis(void) { return ++stub::now_ms; }
unsigned long micros(void) { return stub::now_ms * 1000u; }
void delay(unsigned long ms) { stub::now_ms += ms; }
void yield(void) {}

#if defined(ARDUINO_ARCH_ESP32)
StubEsp ESP;
uint32_t StubEsp::getCycleCount() { return 12345u; }
#endif
