/*
 * fuzz_link.c - libFuzzer target for the device side of the serial protocol
 * (firmware/protocol/td_link.c), built with AddressSanitizer and UBSan by bench/fuzz_link.py.
 *
 * The first input byte picks how the rest reaches the device:
 *   0  raw bytes through td_link_feed(), every completed frame through td_link_handle()
 *   1  records turned into well-formed frames (the harness computes the CRC, so the fuzzer reaches
 *      the request handlers instead of stopping at the checksum), some then damaged on purpose
 *   2  raw bytes through the real main loop, td_link_poll(), with a fake HAL whose clock the input
 *      drives: 0xFE 0x00 = the line goes quiet past the byte timeout, 0xFE 0x01 = the clock steps
 *      back 1 ms (the emulated boards' SysTick glitch), 0xFE other = a literal 0xFE
 * Bits 2-3 of that byte choose td_model_init()'s result (0, -1, -4 or -5), so a device whose runtime
 * failed to initialise is fuzzed too.
 *
 * Every frame the device sends is checked against PROTOCOL.md: sync, a length within
 * TD_LINK_MAX_PAYLOAD that matches the bytes written, a correct CRC, an OK or ERROR type, the
 * request's seq, one frame per write, and HELLO/RUN payloads of the documented size. A violation
 * aborts (a crash to libFuzzer), as does any memory error or undefined behaviour.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_hal.h"
#include "td_link.h"
#include "td_runtime.h"

/* ---- a runtime with several tensors of awkward sizes (one bigger than a frame) ----------------- */

#define N_IN 2
#define N_OUT 3
static int8_t in0[37], in1[1500];
static int8_t out0[5], out1[1100], out2[3];
static int8_t *const inputs[N_IN] = {in0, in1};
static int8_t *const outputs[N_OUT] = {out0, out1, out2};
static const size_t in_sizes[N_IN] = {sizeof in0, sizeof in1};
static const size_t out_sizes[N_OUT] = {sizeof out0, sizeof out1, sizeof out2};
static int init_result;

int td_model_init(void) { return init_result; }
int td_model_invoke(void)
{
    if (init_result != 0)
        return init_result;
    for (int o = 0; o < N_OUT; o++)
        for (size_t j = 0; j < out_sizes[o]; j++)
            outputs[o][j] = (int8_t)(in0[j % sizeof in0] ^ in1[(j * 7 + (size_t)o) % sizeof in1]);
    return 0;
}
int td_model_num_inputs(void) { return N_IN; }
int td_model_num_outputs(void) { return N_OUT; }
int8_t *td_model_input(int i) { return (i >= 0 && i < N_IN) ? inputs[i] : NULL; }
size_t td_model_input_size(int i) { return (i >= 0 && i < N_IN) ? in_sizes[i] : 0; }
const int8_t *td_model_output(int i) { return (i >= 0 && i < N_OUT) ? outputs[i] : NULL; }
size_t td_model_output_size(int i) { return (i >= 0 && i < N_OUT) ? out_sizes[i] : 0; }
size_t td_model_arena_used(void) { return 4096; }
const char *td_model_runtime_name(void) { return "fuzz"; }

static const td_tensor_spec_t in_specs[N_IN] = {
    {TD_INT8, 2, {1, 37, 0, 0, 0, 0}, 0.5f, -3},
    {TD_INT8, 4, {1, 10, 15, 10, 0, 0}, 0.25f, 0},
};
static const td_tensor_spec_t out_specs[N_OUT] = {
    {TD_INT8, 2, {1, 5, 0, 0, 0, 0}, 0.1f, 1},
    {TD_INT8, 6, {1, 2, 5, 5, 2, 11}, 1.0f, -128},
    {TD_INT8, 1, {3, 0, 0, 0, 0, 0}, 0.5f, 7},
};
const td_model_info_t td_model_info = {{0}, N_IN, N_OUT, in_specs, out_specs, 25000000u};

/* ---- checking what the device sends ------------------------------------------------------------- */

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "fuzz_link: protocol violation: %s (line %d)\n", #cond, __LINE__);   \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

static int expect_seq = -1; /* the seq the next reply must carry, or -1 when any is fine */
static int expect_type = -1;
static unsigned replies;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void check_reply(const uint8_t *f, size_t n)
{
    CHECK(n >= TD_LINK_HEADER_BYTES + TD_LINK_CRC_BYTES && n <= TD_LINK_FRAME_MAX);
    CHECK(f[0] == TD_LINK_SYNC0 && f[1] == TD_LINK_SYNC1);
    size_t len = (size_t)f[4] | ((size_t)f[5] << 8);
    CHECK(len <= TD_LINK_MAX_PAYLOAD && n == TD_LINK_HEADER_BYTES + len + TD_LINK_CRC_BYTES);
    CHECK(le32(f + n - 4) == td_crc32(0, f + 2, n - 6));
    CHECK(f[2] == TD_RSP_OK || f[2] == TD_RSP_ERROR);
    if (expect_seq >= 0)
        CHECK(f[3] == (uint8_t)expect_seq);
    const uint8_t *pl = f + TD_LINK_HEADER_BYTES;
    if (f[2] == TD_RSP_ERROR) {
        CHECK(len == 4 && pl[0] >= TD_ERR_CRC && pl[0] <= TD_ERR_UNSUPPORTED);
        if (pl[0] == TD_ERR_RUNTIME)
            CHECK(init_result != 0);
        return;
    }
    if (expect_type == TD_REQ_HELLO) {
        CHECK(len >= 48 && pl[0] == TD_LINK_PROTOCOL_VERSION && pl[1] == N_IN && pl[2] == N_OUT);
        size_t at = 48 + pl[3];
        for (int t = 0; t < N_IN + N_OUT; t++) {
            CHECK(at + 14 <= len && pl[at + 1] <= 6);
            at += 14 + 4u * pl[at + 1];
        }
        CHECK(at == len);
    } else if (expect_type == TD_REQ_RUN) {
        CHECK(len == 16 + (sizeof out0 + sizeof out1 + sizeof out2 < TD_LINK_MAX_PAYLOAD - 16
                               ? sizeof out0 + sizeof out1 + sizeof out2 : TD_LINK_MAX_PAYLOAD - 16));
    } else if (expect_type == TD_REQ_INVOKE) {
        CHECK(len == 16);
    }
}

/* ---- the fake HAL (mode 2) ------------------------------------------------------------------------ */

static const uint8_t *line;
static size_t line_len, line_pos;
static uint32_t clock_us;
static unsigned writes_pending_check;

void td_hal_init(void) {}

void td_hal_write(const uint8_t *buf, size_t n)
{
    check_reply(buf, n); /* one whole frame per write */
    replies++;
    writes_pending_check++;
}

int td_hal_read_byte(uint32_t timeout_ms)
{
    if (line_pos >= line_len)
        return -1;
    uint8_t b = line[line_pos++];
    if (b == 0xFE && line_pos < line_len) {
        uint8_t op = line[line_pos++];
        if (op == 0x00) {
            clock_us += timeout_ms * 1000u + 1u; /* quiet past the timeout */
            return -1;
        }
        if (op == 0x01) {
            clock_us -= 1000u; /* the clock steps back, the UART loop gives up at once */
            return -1;
        }
        b = op;
    }
    clock_us += 87u; /* one byte time at 115200 baud */
    return b;
}

uint32_t td_hal_micros(void) { return clock_us; }
uint32_t td_hal_cycles(void) { return clock_us * 25u; }

/* ---- the three ways in ------------------------------------------------------------------------- */

static td_link_parser_t parser;
static uint8_t tx[TD_LINK_FRAME_MAX];

static void feed_bytes(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        td_feed_result_t r = td_link_feed(&parser, data[i]);
        size_t out = 0;
        expect_seq = parser.seq;
        expect_type = -1;
        if (r == TD_FEED_FRAME) {
            CHECK(parser.len <= TD_LINK_MAX_PAYLOAD);
            expect_type = parser.type;
            out = td_link_handle(&parser, tx);
        } else if (r == TD_FEED_BAD_CRC) {
            out = td_link_encode_error(tx, parser.seq, TD_ERR_CRC, parser.type, 0);
        } else if (r == TD_FEED_TOO_LONG) {
            out = td_link_encode_error(tx, parser.seq, TD_ERR_TOO_LONG, parser.type, TD_LINK_MAX_PAYLOAD);
        }
        if (out)
            check_reply(tx, out);
    }
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Records: type, seq, len (2 bytes, kept within the frame buffer), flags, then len payload bytes
 * (fewer if the input ends). flags bit0: flip a bit somewhere; bit1: cut the frame short. */
static void feed_records(const uint8_t *data, size_t n)
{
    static uint8_t frame[TD_LINK_FRAME_MAX + 16];
    size_t at = 0;
    while (at + 5 <= n) {
        uint8_t type = data[at], seq = data[at + 1], flags = data[at + 4];
        size_t len = ((size_t)data[at + 2] | ((size_t)data[at + 3] << 8)) % (TD_LINK_MAX_PAYLOAD + 1);
        at += 5;
        if (len > n - at)
            len = n - at;
        frame[0] = TD_LINK_SYNC0;
        frame[1] = TD_LINK_SYNC1;
        frame[2] = type;
        frame[3] = seq;
        put_u16(frame + 4, (uint16_t)len);
        memcpy(frame + 6, data + at, len);
        at += len;
        uint32_t crc = td_crc32(0, frame + 2, 4 + len);
        for (int k = 0; k < 4; k++)
            frame[6 + len + (size_t)k] = (uint8_t)(crc >> (8 * k));
        size_t size = len + 10;
        if ((flags & 1) && size > 0)
            frame[(size_t)flags * 31u % size] ^= (uint8_t)(1u << (flags >> 5));
        if (flags & 2)
            size = (size_t)flags % size;
        feed_bytes(frame, size);
    }
}

static void serve(const uint8_t *data, size_t n)
{
    line = data;
    line_len = n;
    line_pos = 0;
    /* Each step consumes at least one input byte or one escape; a bounded number of quiet steps
     * at the end lets a pending frame time out. */
    unsigned idle = 0;
    while (line_pos < line_len || idle++ < 2) {
        if (line_pos >= line_len)
            clock_us += TD_LINK_BYTE_TIMEOUT_MS * 1000u + 1u;
        expect_seq = -1; /* replies are checked for form; seqs are checked in modes 0 and 1 */
        expect_type = -1;
        td_link_poll();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const int init_results[4] = {0, -1, -4, -5};
    uint8_t mode = data[0];
    init_result = init_results[(mode >> 2) & 3];
    clock_us = 0;
    replies = 0;
    td_link_parser_reset(&parser);
    td_link_init(); /* resets the main loop's parser and re-reads init_result */
    switch (mode & 3) {
    case 0: feed_bytes(data + 1, size - 1); break;
    case 1: feed_records(data + 1, size - 1); break;
    default: serve(data + 1, size - 1); break;
    }
    return 0;
}
