/* Test stub (see tests/stubs/README.md): the Arduino API the HAL uses. The host test program
 * defines the objects and functions; millis()/micros() advance a fake clock so timeouts end. */
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
    uint32_t getCycleCount();
};
extern StubEsp ESP;
#endif

#endif
