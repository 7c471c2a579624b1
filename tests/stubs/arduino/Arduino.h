/* Test stub (see tests/stubs/README.md): the Arduino API the HAL and main.cpp use, implemented in
 * arduino_stub.cpp. Serial is a fake with an RX queue and a TX log that accepts at most 3 bytes per
 * write() (like a full USB buffer); millis() advances 1 ms per call so timeouts end. */
#ifndef TD_STUB_ARDUINO_H
#define TD_STUB_ARDUINO_H

#include <cstddef>
#include <cstdint>

class StubSerial {
 public:
    void begin(unsigned long baud);
    explicit operator bool() const;
    size_t write(const uint8_t *buf, size_t n);
    int available();
    int read();
};

extern StubSerial Serial;

unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);
void yield(void);

#if defined(ARDUINO_ARCH_ESP32)
class StubEsp {
 public:
    uint32_t getCycleCount(); /* always 12345 */
};
extern StubEsp ESP;
#endif

/* Test hooks: what the fake Serial saw, and bytes queued for it to receive. */
namespace stub {
extern unsigned long begin_calls, begin_baud, now_ms;
extern uint8_t tx[256];
extern size_t tx_len;
void queue_rx(const uint8_t *bytes, size_t n);
}  // namespace stub

#endif
