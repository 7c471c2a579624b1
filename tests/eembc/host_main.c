/* host_main.c - the EEMBC server as a desktop process (td_hal_host.c: stdin/stdout), for tests. */
#include "td_eembc.h"
#include "td_hal.h"

int main(void)
{
    td_hal_init();
    td_eembc_serve_forever();
    return 0;
}
