/* Host harness: links a whole rendered PlatformIO project's src/ (main.cpp, protocol, HAL, runtime
 * adapter, model files) against the stubs, proving every symbol the project needs is defined in it
 * exactly once, then runs Arduino's setup() (which must start Serial once). Prints "ok". */
#include <Arduino.h>

#include <cstdio>

void setup();
void loop();

int main(void) {
    void (*volatile keep_loop)() = loop; /* loop() never returns; only its link is checked */
    (void)keep_loop;
    setup();
    const bool ok = stub::begin_calls == 1 && stub::begin_baud == TD_SERIAL_BAUD;
    std::printf(ok ? "ok\n" : "FAILED: setup() did not start Serial at TD_SERIAL_BAUD\n");
    return ok ? 0 : 1;
}
