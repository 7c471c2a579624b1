/*
 * uart_cmsdk.c - td_hal.h for QEMU mps2-an386: Arm CMSDK APB UART0 at 0x40004000, polled.
 * Registers (CMSDK APB UART, Arm DDI 0479): DATA +0x00, STATE +0x04 (bit0 TX full, bit1 RX full),
 * CTRL +0x08 (bit0 TX enable, bit1 RX enable), BAUDDIV +0x10 (>= 16). QEMU ignores the divider.
 */
#include "td_board.h"
#include "td_hal.h"

#define UART0 0x40004000u
#define UART_DATA (UART0 + 0x00u)
#define UART_STATE (UART0 + 0x04u)
#define UART_CTRL (UART0 + 0x08u)
#define UART_BAUDDIV (UART0 + 0x10u)
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_RX_ENABLE 0x3u

void td_hal_init(void)
{
    td_clock_init();
    TD_REG32(UART_BAUDDIV) = 16u;
    TD_REG32(UART_CTRL) = CTRL_TX_RX_ENABLE;
}

void td_hal_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (TD_REG32(UART_STATE) & STATE_TX_FULL) {
        }
        TD_REG32(UART_DATA) = buf[i];
    }
}

int td_hal_read_byte(uint32_t timeout_ms)
{
    uint32_t start = td_hal_micros();
    while (!(TD_REG32(UART_STATE) & STATE_RX_FULL)) {
        if (td_hal_micros() - start >= timeout_ms * 1000u)
            return -1;
    }
    return (int)(TD_REG32(UART_DATA) & 0xFFu);
}
