/*
 * uart_stellaris.c - td_hal.h for QEMU lm3s6965evb: Stellaris UART0 at 0x4000C000 (a PL011),
 * polled. Registers (LM3S6965 datasheet, UART chapter): DR +0x000, FR +0x018 (bit4 RXFE, bit5
 * TXFF), IBRD +0x024, FBRD +0x028, LCRH +0x02C (bit4 FEN, bits5-6 WLEN), CTL +0x030 (bit0 UARTEN,
 * bit8 TXE, bit9 RXE). The UART0 clock gate is RCGC1 bit 0 at 0x400FE104.
 */
#include "td_board.h"
#include "td_hal.h"

#define SYSCTL_RCGC1 0x400FE104u
#define UART0 0x4000C000u
#define UART_DR (UART0 + 0x000u)
#define UART_FR (UART0 + 0x018u)
#define UART_IBRD (UART0 + 0x024u)
#define UART_FBRD (UART0 + 0x028u)
#define UART_LCRH (UART0 + 0x02Cu)
#define UART_CTL (UART0 + 0x030u)
#define FR_RXFE 0x10u
#define FR_TXFF 0x20u
#define LCRH_8N1_FIFO 0x70u /* 8 data bits, FIFOs on */
#define CTL_ENABLE_TX_RX 0x301u

void td_hal_init(void)
{
    td_clock_init();
    TD_REG32(SYSCTL_RCGC1) |= 1u;
    TD_REG32(UART_CTL) = 0;
    TD_REG32(UART_IBRD) = 27u; /* 115200 baud from 50 MHz; QEMU ignores it */
    TD_REG32(UART_FBRD) = 8u;
    TD_REG32(UART_LCRH) = LCRH_8N1_FIFO;
    TD_REG32(UART_CTL) = CTL_ENABLE_TX_RX;
}

void td_hal_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (TD_REG32(UART_FR) & FR_TXFF) {
        }
        TD_REG32(UART_DR) = buf[i];
    }
}

int td_hal_read_byte(uint32_t timeout_ms)
{
    uint32_t start = td_hal_micros();
    while (TD_REG32(UART_FR) & FR_RXFE) {
        if (td_hal_micros() - start >= timeout_ms * 1000u)
            return -1;
    }
    return (int)(TD_REG32(UART_DR) & 0xFFu);
}
