/*
 * td_link.c - device side of the tinydeploy serial protocol (spec: firmware/PROTOCOL.md).
 *
 * C99, no allocation, no libc beyond memcpy and strlen. Every length that comes off the wire is checked
 * against a buffer bound before it is used, so a malformed frame can cost a reply, never memory.
 */
#include "td_link.h"

#include <string.h>

#include "td_hal.h"
#include "td_runtime.h"
#ifdef TD_PROFILE
#include "td_profile.h"
#endif

/* The length field is 16 bits, and HELLO needs room for at least one small tensor spec. */
#if TD_LINK_MAX_PAYLOAD < 128 || TD_LINK_MAX_PAYLOAD > 65535
#error "TD_LINK_MAX_PAYLOAD must be between 128 and 65535"
#endif

/* ---- CRC-32 ------------------------------------------------------------------------------------ */

/* Nibble table: 64 bytes of flash instead of 1 KB, still fast enough for a UART. */
static const uint32_t crc_nibble[16] = {
    0x00000000U, 0x1DB71064U, 0x3B6E20C8U, 0x26D930ACU, 0x76DC4190U, 0x6B6B51F4U,
    0x4DB26158U, 0x5005713CU, 0xEDB88320U, 0xF00F9344U, 0xD6D6A3E8U, 0xCB61B38CU,
    0x9B64C2B0U, 0x86D3D2D4U, 0xA00AE278U, 0xBDBDF21CU};

uint32_t td_crc32(uint32_t crc, const uint8_t *data, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
    }
    return ~crc;
}

/* ---- little-endian field access ------------------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    put_u32(p, bits);
}

/* ---- frame parser -------------------------------------------------------------------------------- */

enum { ST_SYNC0, ST_SYNC1, ST_TYPE, ST_SEQ, ST_LEN0, ST_LEN1, ST_BODY };

void td_link_parser_reset(td_link_parser_t *p)
{
    p->state = ST_SYNC0;
    p->type = 0;
    p->seq = 0;
    p->len = 0;
    p->got = 0;
}

/* Busy once both sync bytes arrived: a lone stray 0xA5 is line noise, not a broken frame. */
int td_link_parser_busy(const td_link_parser_t *p) { return p->state > ST_SYNC1; }

/* CRC of a frame: type, seq, len (as sent) then the payload. */
static uint32_t frame_crc(uint8_t type, uint8_t seq, uint16_t len, const uint8_t *payload)
{
    uint8_t head[4] = {type, seq, 0, 0};
    put_u16(head + 2, len);
    return td_crc32(td_crc32(0, head, sizeof head), payload, len);
}

td_feed_result_t td_link_feed(td_link_parser_t *p, uint8_t byte)
{
    switch (p->state) {
    case ST_SYNC0:
        if (byte == TD_LINK_SYNC0)
            p->state = ST_SYNC1;
        return TD_FEED_MORE;
    case ST_SYNC1:
        /* "A5 A5 5A" must still sync: a repeated first byte keeps us waiting for the second. */
        if (byte == TD_LINK_SYNC1)
            p->state = ST_TYPE;
        else if (byte != TD_LINK_SYNC0)
            p->state = ST_SYNC0;
        return TD_FEED_MORE;
    case ST_TYPE:
        p->type = byte;
        p->state = ST_SEQ;
        return TD_FEED_MORE;
    case ST_SEQ:
        p->seq = byte;
        p->state = ST_LEN0;
        return TD_FEED_MORE;
    case ST_LEN0:
        p->len = byte;
        p->state = ST_LEN1;
        return TD_FEED_MORE;
    case ST_LEN1:
        p->len = (uint16_t)(p->len | ((uint16_t)byte << 8));
        p->got = 0;
        if (p->len > TD_LINK_MAX_PAYLOAD) {
            p->state = ST_SYNC0;
            return TD_FEED_TOO_LONG;
        }
        p->state = ST_BODY;
        return TD_FEED_MORE;
    default: /* ST_BODY: payload then 4 CRC bytes; got < len + 4 <= sizeof body holds here */
        p->body[p->got++] = byte;
        if (p->got < p->len + TD_LINK_CRC_BYTES)
            return TD_FEED_MORE;
        p->state = ST_SYNC0;
        if (get_u32(p->body + p->len) != frame_crc(p->type, p->seq, p->len, p->body))
            return TD_FEED_BAD_CRC;
        return TD_FEED_FRAME;
    }
}

/* ---- frame encoder ------------------------------------------------------------------------------- */

/* Write header and CRC around a payload of n bytes already placed at out + TD_LINK_HEADER_BYTES. */
static size_t finish_frame(uint8_t *out, uint8_t type, uint8_t seq, size_t n)
{
    out[0] = TD_LINK_SYNC0;
    out[1] = TD_LINK_SYNC1;
    out[2] = type;
    out[3] = seq;
    put_u16(out + 4, (uint16_t)n);
    put_u32(out + TD_LINK_HEADER_BYTES + n,
            frame_crc(type, seq, (uint16_t)n, out + TD_LINK_HEADER_BYTES));
    return TD_LINK_HEADER_BYTES + n + TD_LINK_CRC_BYTES;
}

size_t td_link_encode_error(uint8_t *out, uint8_t seq, uint8_t code, uint8_t req_type, int16_t detail)
{
    uint8_t *pl = out + TD_LINK_HEADER_BYTES;
    pl[0] = code;
    pl[1] = req_type;
    put_u16(pl + 2, (uint16_t)detail);
    return finish_frame(out, TD_RSP_ERROR, seq, 4);
}

/* ---- request handlers ---------------------------------------------------------------------------- */

/* td_model_init()'s result; every request touching tensors is refused while it is non-zero. */
static int init_status = -1;

static td_link_parser_t parser;
static uint8_t tx[TD_LINK_FRAME_MAX];
/* td_hal_micros() when the last byte arrived: the byte timeout is measured from here. */
static uint32_t last_byte_us;

void td_link_init(void)
{
    td_link_parser_reset(&parser);
    last_byte_us = 0;
    init_status = td_model_init();
}

/* A handler writes its payload at pl (room TD_LINK_MAX_PAYLOAD) and returns its length, or a
 * negative error code (-TD_ERR_x) with *detail optionally set. */
typedef int (*handler_fn)(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail);

static int handle_ping(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)detail;
    memcpy(pl, req, n);
    return (int)n;
}

static size_t put_tensor_spec(uint8_t *p, const td_tensor_spec_t *t, size_t nbytes)
{
    uint8_t rank = t->rank > 6 ? 6 : t->rank;
    p[0] = t->dtype;
    p[1] = rank;
    put_u32(p + 2, (uint32_t)nbytes);
    put_f32(p + 6, t->scale);
    put_u32(p + 10, (uint32_t)t->zero_point);
    for (uint8_t d = 0; d < rank; d++)
        put_u32(p + 14 + 4u * d, (uint32_t)t->shape[d]);
    return 14u + 4u * rank;
}

#define HELLO_FIXED_BYTES 48u
#define TENSOR_SPEC_MAX_BYTES (14u + 4u * 6u)

static int handle_hello(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)req;
    (void)detail;
    if (n != 0)
        return -TD_ERR_BAD_PAYLOAD;
    const td_model_info_t *info = &td_model_info;
    const char *name = td_model_runtime_name();
    size_t name_len = strlen(name);
    if (name_len > 32)
        name_len = 32;
    size_t tensors = (size_t)info->num_inputs + info->num_outputs;
    if (HELLO_FIXED_BYTES + name_len + tensors * TENSOR_SPEC_MAX_BYTES > TD_LINK_MAX_PAYLOAD)
        return -TD_ERR_UNSUPPORTED; /* too many tensors to describe in one frame */

    pl[0] = TD_LINK_PROTOCOL_VERSION;
    pl[1] = info->num_inputs;
    pl[2] = info->num_outputs;
    pl[3] = (uint8_t)name_len;
    put_u16(pl + 4, TD_LINK_MAX_PAYLOAD);
    put_u16(pl + 6, (uint16_t)(int16_t)init_status);
    put_u32(pl + 8, info->clock_hz);
    put_u32(pl + 12, (uint32_t)td_model_arena_used());
    memcpy(pl + 16, info->model_hash, 32);
    size_t at = HELLO_FIXED_BYTES;
    memcpy(pl + at, name, name_len);
    at += name_len;
    for (int i = 0; i < info->num_inputs; i++)
        at += put_tensor_spec(pl + at, &info->inputs[i], td_model_input_size(i));
    for (int i = 0; i < info->num_outputs; i++)
        at += put_tensor_spec(pl + at, &info->outputs[i], td_model_output_size(i));
    return (int)at;
}

/* Copy one input chunk: req = u8 tensor, u32 offset, data. */
static int write_input_chunk(const uint8_t *req, size_t n)
{
    if (n < 5)
        return -TD_ERR_BAD_PAYLOAD;
    int idx = req[0];
    uint32_t off = get_u32(req + 1);
    size_t len = n - 5;
    if (idx >= td_model_num_inputs())
        return -TD_ERR_BAD_TENSOR;
    size_t size = td_model_input_size(idx);
    if (off > size || len > size - off)
        return -TD_ERR_BAD_RANGE;
    if (len)
        memcpy(td_model_input(idx) + off, req + 5, len);
    return 0;
}

static int handle_set_input(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)pl;
    (void)detail;
    return write_input_chunk(req, n);
}

static uint32_t crc_of_inputs(void)
{
    uint32_t crc = 0;
    for (int i = 0; i < td_model_num_inputs(); i++)
        crc = td_crc32(crc, (const uint8_t *)td_model_input(i), td_model_input_size(i));
    return crc;
}

static uint32_t crc_of_outputs(void)
{
    uint32_t crc = 0;
    for (int i = 0; i < td_model_num_outputs(); i++)
        crc = td_crc32(crc, (const uint8_t *)td_model_output(i), td_model_output_size(i));
    return crc;
}

#define INVOKE_REPORT_BYTES 16u

/* Invoke and write the 16-byte report: µs, cycles, CRC-32 of all inputs, CRC-32 of all outputs.
 * The CRCs let the host prove the device computed on the bytes it sent (a reset or a lost chunk
 * shows up as a mismatch) and that the outputs it reassembles from chunks are the ones computed. */
static int invoke_and_report(uint8_t *pl, int16_t *detail)
{
    uint32_t in_crc = crc_of_inputs();
    uint32_t t0 = td_hal_micros();
    uint32_t c0 = td_hal_cycles();
    int rc = td_model_invoke();
    uint32_t cycles = td_hal_cycles() - c0;
    uint32_t us = td_hal_micros() - t0;
    if (rc != 0) {
        *detail = (int16_t)rc;
        return -TD_ERR_RUNTIME;
    }
    put_u32(pl, us);
    put_u32(pl + 4, cycles);
    put_u32(pl + 8, in_crc);
    put_u32(pl + 12, crc_of_outputs());
    return INVOKE_REPORT_BYTES;
}

static int handle_invoke(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)req;
    if (n != 0)
        return -TD_ERR_BAD_PAYLOAD;
    return invoke_and_report(pl, detail);
}

/* Copy up to room bytes of the outputs, concatenated in index order, starting at output 0. */
static size_t copy_output_head(uint8_t *dst, size_t room)
{
    size_t at = 0;
    for (int i = 0; i < td_model_num_outputs() && at < room; i++) {
        size_t size = td_model_output_size(i);
        size_t take = size < room - at ? size : room - at;
        memcpy(dst + at, td_model_output(i), take);
        at += take;
    }
    return at;
}

static int handle_run(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    int rc = write_input_chunk(req, n);
    if (rc < 0)
        return rc;
    rc = invoke_and_report(pl, detail);
    if (rc < 0)
        return rc;
    return (int)(INVOKE_REPORT_BYTES +
                 copy_output_head(pl + INVOKE_REPORT_BYTES, TD_LINK_MAX_PAYLOAD - INVOKE_REPORT_BYTES));
}

/* req = u8 tensor, u32 offset, u16 length. */
static int handle_get_output(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)detail;
    if (n != 7)
        return -TD_ERR_BAD_PAYLOAD;
    int idx = req[0];
    uint32_t off = get_u32(req + 1);
    size_t len = (size_t)req[5] | ((size_t)req[6] << 8);
    if (idx >= td_model_num_outputs())
        return -TD_ERR_BAD_TENSOR;
    size_t size = td_model_output_size(idx);
    if (len > TD_LINK_MAX_PAYLOAD || off > size || len > size - off)
        return -TD_ERR_BAD_RANGE;
    memcpy(pl, td_model_output(idx) + off, len);
    return (int)len;
}

#ifdef TD_PROFILE
#define TIMINGS_HEADER_BYTES 8u
#define TIMING_ENTRY_BYTES 12u

/* The last inference's steps from index `first` on, as many as fit: req = u16 first.
 * OK payload: u16 steps, u16 first, u16 dropped, u16 entries here, then per entry
 * u16 op, u8 ops, u8 0, u32 cycles, u32 micros (PROTOCOL.md, OP_TIMINGS). */
static int handle_op_timings(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)detail;
    if (n != 2)
        return -TD_ERR_BAD_PAYLOAD;
    uint16_t first = (uint16_t)(req[0] | (req[1] << 8));
    uint16_t total = td_profile_steps();
    if (first > total)
        return -TD_ERR_BAD_RANGE;
    size_t count = (size_t)(total - first);
    size_t room = (TD_LINK_MAX_PAYLOAD - TIMINGS_HEADER_BYTES) / TIMING_ENTRY_BYTES;
    if (count > room)
        count = room;
    put_u16(pl, total);
    put_u16(pl + 2, first);
    put_u16(pl + 4, td_profile_dropped());
    put_u16(pl + 6, (uint16_t)count);
    uint8_t *at = pl + TIMINGS_HEADER_BYTES;
    for (size_t i = 0; i < count; i++, at += TIMING_ENTRY_BYTES) {
        uint16_t op = 0;
        uint8_t ops = 0;
        uint32_t cycles = 0, micros = 0;
        (void)td_profile_get((uint16_t)(first + i), &op, &ops, &cycles, &micros);
        put_u16(at, op);
        at[2] = ops;
        at[3] = 0;
        put_u32(at + 4, cycles);
        put_u32(at + 8, micros);
    }
    return (int)(TIMINGS_HEADER_BYTES + count * TIMING_ENTRY_BYTES);
}
#else
/* Built without TD_PROFILE: no step table, OP_TIMINGS is answered UNSUPPORTED. */
static int handle_op_timings(const uint8_t *req, size_t n, uint8_t *pl, int16_t *detail)
{
    (void)req;
    (void)n;
    (void)pl;
    (void)detail;
    return -TD_ERR_UNSUPPORTED;
}
#endif

static handler_fn handler_for(uint8_t type)
{
    switch (type) {
    case TD_REQ_HELLO: return handle_hello;
    case TD_REQ_SET_INPUT: return handle_set_input;
    case TD_REQ_INVOKE: return handle_invoke;
    case TD_REQ_GET_OUTPUT: return handle_get_output;
    case TD_REQ_RUN: return handle_run;
    case TD_REQ_OP_TIMINGS: return handle_op_timings;
    case TD_REQ_PING: return handle_ping;
    default: return NULL;
    }
}

/* Requests that may run before (or after a failed) td_model_init. */
static int needs_model(uint8_t type) { return type != TD_REQ_HELLO && type != TD_REQ_PING; }

size_t td_link_handle(const td_link_parser_t *p, uint8_t *out)
{
    handler_fn fn = handler_for(p->type);
    if (fn == NULL)
        return td_link_encode_error(out, p->seq, TD_ERR_UNKNOWN_TYPE, p->type, 0);
    if (needs_model(p->type) && init_status != 0)
        return td_link_encode_error(out, p->seq, TD_ERR_RUNTIME, p->type, (int16_t)init_status);
    int16_t detail = 0;
    int n = fn(td_link_payload(p), p->len, out + TD_LINK_HEADER_BYTES, &detail);
    if (n < 0)
        return td_link_encode_error(out, p->seq, (uint8_t)-n, p->type, detail);
    return finish_frame(out, TD_RSP_OK, p->seq, (size_t)n);
}

/* ---- main loop ----------------------------------------------------------------------------------- */

/* Answer the result of one fed byte; silent while a frame is still arriving. */
static void answer(td_feed_result_t r)
{
    size_t n = 0;
    if (r == TD_FEED_FRAME)
        n = td_link_handle(&parser, tx);
    else if (r == TD_FEED_BAD_CRC)
        n = td_link_encode_error(tx, parser.seq, TD_ERR_CRC, parser.type, 0);
    else if (r == TD_FEED_TOO_LONG)
        n = td_link_encode_error(tx, parser.seq, TD_ERR_TOO_LONG, parser.type, (int16_t)TD_LINK_MAX_PAYLOAD);
    if (n)
        td_hal_write(tx, n);
}

void td_link_poll(void)
{
    int c = td_hal_read_byte(TD_LINK_BYTE_TIMEOUT_MS);
    if (c >= 0) {
        last_byte_us = td_hal_micros();
        answer(td_link_feed(&parser, (uint8_t)c));
        return;
    }
    if (!td_link_parser_busy(&parser))
        return;
    /* The HAL's "nothing within timeout_ms" is not trusted on its own: a clock that steps back
     * (the emulated boards' SysTick clock does for a moment at each millisecond wrap, more often
     * on a busy host) makes an unsigned "now - start >= timeout" true at once. A frame is dropped
     * only when the line has really been quiet that long, measured as a signed difference. */
    int32_t quiet_us = (int32_t)(td_hal_micros() - last_byte_us);
    if (quiet_us < (int32_t)(TD_LINK_BYTE_TIMEOUT_MS * 1000u))
        return;
    /* A frame stopped mid-way (dropped bytes): say so now rather than let the host wait. */
    size_t n = td_link_encode_error(tx, parser.seq, TD_ERR_TIMEOUT, parser.type, 0);
    td_link_parser_reset(&parser);
    td_hal_write(tx, n);
}

void td_link_serve_forever(void)
{
    td_link_init();
    for (;;)
        td_link_poll();
}
