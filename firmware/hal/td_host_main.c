/* td_host_main.c - entry point of the host-built device (td_hal_host.c + protocol + a runtime). */
#include "td_hal.h"
#include "td_link.h"

int main(void)
{
    td_hal_init();
    td_link_serve_forever();
    return 0;
}
