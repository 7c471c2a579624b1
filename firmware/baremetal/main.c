/* main.c - the emulated boards' firmware: bring up the UART and clock, then serve the protocol. */
#include "td_hal.h"
#include "td_link.h"

int main(void)
{
    td_hal_init();
    td_link_serve_forever();
    return 0;
}
