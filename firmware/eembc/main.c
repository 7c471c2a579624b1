/* main.c - the emulated boards' firmware with the EEMBC benchmark protocol instead of tinydeploy's
 * own: bring up the UART and clock, then answer the benchmark runner's commands. */
#include "td_eembc.h"
#include "td_hal.h"

int main(void)
{
    td_hal_init();
    td_eembc_serve_forever();
    return 0;
}
