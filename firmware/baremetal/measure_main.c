/* measure_main.c - main() of the TFLM arena measurement firmware (tinydeploy.tflm_firmware). */
#include "td_board.h"

int td_tflm_measure(void);

int main(void)
{
    td_clock_init();
    return td_tflm_measure();
}
