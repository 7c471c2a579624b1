/*
 * td_eembc.c - EEMBC's MLPerf Tiny serial protocol over td_hal.h and td_runtime.h.
 *
 * Written from the public description of the protocol (mlcommons/tiny, benchmark/api and
 * benchmark/runner); firmware/EEMBC.md lists the commands, the exact replies and where this
 * implementation differs from the reference firmware (it refuses what the reference would overrun
 * its buffers on). Numbers are formatted here rather than with printf: newlib-nano's printf has no
 * floats unless linked with them, and "%0.3f" must round exactly like C's printf and Python's "%".
 *
 * Model-specific settings (td_eembc_config.h, written by `tinydeploy build --protocol eembc`):
 *   TD_EEMBC_MODEL        the benchmark's model id the runner looks up ("ic01", "ad01", ...)
 *   TD_EEMBC_BYTES        what a buffer of one byte per input value holds: TD_EEMBC_BYTES_INT8
 *                         (the input tensor's int8 bytes) or TD_EEMBC_BYTES_UINT8 (0..255 values,
 *                         tensor = value - 128: the image benchmarks' datasets)
 *   TD_EEMBC_FLOAT_INPUT  1: a buffer of 4 bytes per input value is float32, quantized here with the
 *                         input's scale and zero point (the anomaly detection dataset)
 *   TD_EEMBC_RESULTS      TD_EEMBC_RESULTS_SCORES: every output value, dequantized;
 *                         TD_EEMBC_RESULTS_ANOMALY: one value, the mean squared difference between
 *                         the dequantized output and the input (an autoencoder's anomaly score)
 */
#include "td_eembc.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model_settings.h"
#include "td_eembc_config.h"
#include "td_hal.h"
#include "td_runtime.h"

#define TD_EEMBC_BYTES_INT8 0
#define TD_EEMBC_BYTES_UINT8 1
#define TD_EEMBC_RESULTS_SCORES 0
#define TD_EEMBC_RESULTS_ANOMALY 1

#ifndef TD_EEMBC_MODEL
#error "td_eembc_config.h must define TD_EEMBC_MODEL"
#endif
#ifndef TD_EEMBC_BYTES
#define TD_EEMBC_BYTES TD_EEMBC_BYTES_INT8
#endif
#ifndef TD_EEMBC_FLOAT_INPUT
#define TD_EEMBC_FLOAT_INPUT 0
#endif
#ifndef TD_EEMBC_RESULTS
#define TD_EEMBC_RESULTS TD_EEMBC_RESULTS_SCORES
#endif
/* What "name" reports after "m-name-dut-" (the reference firmware's vendor string). */
#ifndef TD_EEMBC_VENDOR
#define TD_EEMBC_VENDOR "tinydeploy"
#endif
/* Longest command, '%' excluded. The official runner sends at most 65 characters ("db " and 31
 * bytes of hex); tinydeploy's own driver sends longer "db" lines to move samples faster. */
#ifndef TD_EEMBC_CMD_BYTES
#define TD_EEMBC_CMD_BYTES 256
#endif
/* While "infer" runs, a progress line every this many milliseconds of the board's clock, so that a
 * host that gives up on a silent device (the mlcommons runner waits 5 s for each line) does not
 * give up on a long timed loop. 0: never. */
#ifndef TD_EEMBC_PROGRESS_MS
#define TD_EEMBC_PROGRESS_MS 1000
#endif

#define FW_VERSION "ULPMark for tinyML Firmware V0.0.1"
#define TD_EEMBC_STR2(x) #x
#define TD_EEMBC_STR(x) TD_EEMBC_STR2(x)

#if TD_NUM_INPUTS != 1
#error "the EEMBC protocol feeds one input tensor"
#endif

#define IN_ELEMENTS ((size_t)TD_INPUT0_ELEMENTS)
#define IN_BYTES ((size_t)TD_INPUT0_BYTES)
#if TD_EEMBC_FLOAT_INPUT
#define DB_CAPACITY (IN_BYTES > 4u * IN_ELEMENTS ? IN_BYTES : 4u * IN_ELEMENTS)
#else
#define DB_CAPACITY IN_BYTES
#endif

/* ------------------------------------------------------------------------------------ state */

static char cmd[TD_EEMBC_CMD_BYTES + 1];
static size_t cmd_len;
static int cmd_too_long;

/* Word-aligned buffers: memcpy from them into the tensor then takes the same (word-wise) path in
 * every build, so the time an inference's input copy takes does not depend on the link layout. */
typedef union { uint8_t bytes[DB_CAPACITY]; uint32_t word; float real; } db_buffer_t;
typedef union { uint8_t bytes[IN_BYTES]; uint32_t word; float real; } input_buffer_t;
static db_buffer_t db_store;
static input_buffer_t staged_store;
#define db db_store.bytes         /* the "db" buffer, as the host sent it */
#define staged staged_store.bytes /* the input tensor's bytes made from db, copied in before each
                                     inference (the native runtime reuses input memory) */
static size_t db_expected;        /* N of the last "db load N", 0 before any */
static size_t db_filled;
static int staged_from_float;     /* the staged input came from float32 values still in db */
static int init_status = -1;
static int have_outputs;          /* an inference has run since the last "db load" */

static uint32_t clock_last;       /* td_hal_micros() extended to 64 bits */
static uint64_t clock_high;

/* ----------------------------------------------------------------------------------- output */

static void put(const char *s) { td_hal_write((const uint8_t *)s, strlen(s)); }

static void put_u64(uint64_t v)
{
    char digits[21];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0);
    char out[21];
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    td_hal_write((const uint8_t *)out, n);
}

static void put_i64(int64_t v)
{
    if (v < 0) {
        put("-");
        put_u64((uint64_t)(-(v + 1)) + 1u);
    } else {
        put_u64((uint64_t)v);
    }
}

static void put_hex_byte(uint8_t b)
{
    static const char hex[] = "0123456789abcdef";
    char two[2] = {hex[b >> 4], hex[b & 15u]};
    td_hal_write((const uint8_t *)two, 2);
}

/* A float's exact integer part, for values too large for 64 bits after the x1000 of put_fixed3
 * (|v| >= 2^54 or so): mantissa * 2^exp in decimal, digits least significant first. */
static void put_big_integer(uint32_t mantissa, int exp)
{
    uint8_t digits[48];
    size_t n = 0;
    do {
        digits[n++] = (uint8_t)(mantissa % 10u);
        mantissa /= 10u;
    } while (mantissa != 0);
    for (int k = 0; k < exp; k++) {
        unsigned carry = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned d = digits[i] * 2u + carry;
            digits[i] = (uint8_t)(d % 10u);
            carry = d / 10u;
        }
        if (carry != 0 && n < sizeof digits)
            digits[n++] = (uint8_t)carry;
    }
    char c;
    while (n > 0) {
        c = (char)('0' + digits[--n]);
        td_hal_write((const uint8_t *)&c, 1);
    }
}

/* v with three decimals, exactly as printf("%0.3f", (double)v): the float's exact value rounded to
 * the nearest thousandth, ties to even; "-" for any negative value (also one that rounds to 0). */
static void put_fixed3(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    const int negative = (int)(bits >> 31);
    const uint32_t biased = (bits >> 23) & 0xFFu;
    const uint32_t fraction = bits & 0x7FFFFFu;
    if (biased == 0xFFu) {
        put(fraction ? "nan" : negative ? "-inf" : "inf");
        return;
    }
    /* |v| = mantissa * 2^exp exactly */
    const uint32_t mantissa = biased ? (fraction | 0x800000u) : fraction;
    const int exp = biased ? (int)biased - 150 : -149;
    if (negative)
        put("-");
    if (exp > 29) { /* an integer: no fractional digits, too large for the 64-bit path */
        put_big_integer(mantissa, exp);
        put(".000");
        return;
    }
    const uint64_t scaled = (uint64_t)mantissa * 1000u; /* < 2^34 */
    uint64_t thousandths;
    if (exp >= 0) {
        thousandths = scaled << exp;
    } else if (-exp >= 40) {
        thousandths = 0; /* below half a thousandth: scaled < 2^34 <= 2^(-exp-1) */
    } else {
        const int shift = -exp;
        const uint64_t rest = scaled & ((1ull << shift) - 1u);
        const uint64_t half = 1ull << (shift - 1);
        thousandths = scaled >> shift;
        if (rest > half || (rest == half && (thousandths & 1u)))
            thousandths++;
    }
    put_u64(thousandths / 1000u);
    const unsigned frac = (unsigned)(thousandths % 1000u);
    char three[4] = {'.', (char)('0' + frac / 100u), (char)('0' + frac / 10u % 10u), (char)('0' + frac % 10u)};
    td_hal_write((const uint8_t *)three, 4);
}

static void ready(void) { put("m-ready\r\n"); }

/* "e-[<text><detail>]" */
static void error2(const char *text, const char *detail)
{
    put("e-[");
    put(text);
    put(detail);
    put("]\r\n");
}

static void error(const char *text) { error2(text, ""); }

/* ------------------------------------------------------------------------------------ clock */

/* Microseconds on the board's clock, extended to 64 bits. A reading a little below the previous
 * one is the emulated boards' SysTick clock stepping back for a moment at a wrap (firmware/
 * PROTOCOL.md): it is held at the previous value rather than taken for a 2^32 wrap. */
static uint64_t now_us(void)
{
    const uint32_t t = td_hal_micros();
    if (t < clock_last) {
        if (clock_last - t < 0x80000000u)
            return clock_high | clock_last;
        clock_high += 0x100000000ull;
    }
    clock_last = t;
    return clock_high | t;
}

static void timestamp(void)
{
    put("m-lap-us-");
    put_u64(now_us());
    put("\r\n");
}

/* ------------------------------------------------------------------------------------ input */

static size_t dtype_bytes(uint8_t dtype)
{
    switch (dtype) {
    case TD_INT16: return 2;
    case TD_INT32:
    case TD_FLOAT32: return 4;
    default: return 1;
    }
}

static float read_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* Element i of a tensor as a real number: dequantized when it has a scale. */
static float real_value(const void *data, const td_tensor_spec_t *spec, size_t i)
{
    const uint8_t *p = (const uint8_t *)data;
    int32_t q;
    switch (spec->dtype) {
    case TD_FLOAT32: return read_f32(p + 4 * i);
    case TD_UINT8: q = p[i]; break;
    case TD_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); q = v; break; }
    case TD_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); q = v; break; }
    default: q = ((const int8_t *)data)[i]; break;
    }
    if (spec->scale == 0.0f)
        return (float)q;
    return (float)(q - spec->zero_point) * spec->scale;
}

#if TD_EEMBC_FLOAT_INPUT
/* x quantized like TFLM's QUANTIZE: round(x / scale) half away from zero, plus the zero point,
 * saturated to the type. */
static void quantize_into(uint8_t *dst, size_t i, float x, const td_tensor_spec_t *spec)
{
    int64_t q = (int64_t)roundf(x / spec->scale) + spec->zero_point;
    int64_t lo = -128, hi = 127;
    if (spec->dtype == TD_UINT8) { lo = 0; hi = 255; }
    if (spec->dtype == TD_INT16) { lo = -32768; hi = 32767; }
    if (spec->dtype == TD_INT32) { lo = INT32_MIN; hi = INT32_MAX; }
    if (q < lo) q = lo;
    if (q > hi) q = hi;
    switch (spec->dtype) {
    case TD_INT16: { int16_t v = (int16_t)q; memcpy(dst + 2 * i, &v, 2); break; }
    case TD_INT32: { int32_t v = (int32_t)q; memcpy(dst + 4 * i, &v, 4); break; }
    case TD_UINT8: dst[i] = (uint8_t)q; break;
    default: dst[i] = (uint8_t)(int8_t)q; break;
    }
}
#endif

/* The reference firmware's th_load_tensor: the db buffer becomes the staged input tensor. Returns
 * 0, or prints the error and returns -1. */
static int load_tensor(void)
{
    const td_tensor_spec_t *spec = &td_model_info.inputs[0];
    if (db_expected == 0 || db_filled != db_expected) {
        put("e-[Input db has ");
        put_u64(db_filled);
        put(" of ");
        put_u64(db_expected);
        put(" bytes loaded; load a sample with 'db load N' and 'db HH..' first]\r\n");
        return -1;
    }
    staged_from_float = 0;
    if (db_filled == IN_BYTES) { /* one value per element of the tensor's own type */
        memcpy(staged, db, IN_BYTES);
#if TD_EEMBC_BYTES == TD_EEMBC_BYTES_UINT8
        if (spec->dtype == TD_INT8)
            for (size_t i = 0; i < IN_BYTES; i++)
                staged[i] = (uint8_t)(db[i] ^ 0x80u); /* value - 128 */
#endif
        staged_from_float = spec->dtype == TD_FLOAT32;
        return 0;
    }
#if TD_EEMBC_FLOAT_INPUT
    if (db_filled == 4u * IN_ELEMENTS) {
        for (size_t i = 0; i < IN_ELEMENTS; i++)
            quantize_into(staged, i, read_f32(db + 4 * i), spec);
        staged_from_float = 1;
        return 0;
    }
#endif
    put("e-[Input db has ");
    put_u64(db_filled);
    put(" bytes, expected ");
    put_u64(IN_BYTES);
#if TD_EEMBC_FLOAT_INPUT
    put(" (one per value) or ");
    put_u64(4u * IN_ELEMENTS);
    put(" (float32)");
#endif
    put("]\r\n");
    return -1;
}

/* ---------------------------------------------------------------------------------- results */

static void results(void)
{
    if (!have_outputs) {
        error("No results: run 'infer' first");
        return;
    }
    put("m-results-[");
#if TD_EEMBC_RESULTS == TD_EEMBC_RESULTS_ANOMALY
    {
        const td_tensor_spec_t *in_spec = &td_model_info.inputs[0];
        const td_tensor_spec_t *out_spec = &td_model_info.outputs[0];
        const int8_t *out = td_model_output(0);
        const size_t n = td_model_output_size(0) / dtype_bytes(out_spec->dtype);
        float sum = 0.0f;
        for (size_t i = 0; i < n && i < IN_ELEMENTS; i++) {
            /* volatile: each product and difference rounded to float on its own, never fused into
             * a multiply-add, so a host computing in float32 gets the same bits */
            volatile float decoded = real_value(out, out_spec, i);
            volatile float original = staged_from_float && in_spec->dtype != TD_FLOAT32
                                          ? read_f32(db + 4 * i) : real_value(staged, in_spec, i);
            volatile float diff = decoded - original;
            volatile float square = diff * diff;
            sum += square;
        }
        put_fixed3(n ? sum / (float)n : 0.0f);
    }
#else
    {
        int first = 1;
        for (int k = 0; k < td_model_num_outputs(); k++) {
            const td_tensor_spec_t *spec = &td_model_info.outputs[k];
            const size_t n = td_model_output_size(k) / dtype_bytes(spec->dtype);
            for (size_t i = 0; i < n; i++) {
                if (!first)
                    put(",");
                first = 0;
                put_fixed3(real_value(td_model_output(k), spec, i));
            }
        }
    }
#endif
    put("]\r\n");
}

/* ------------------------------------------------------------------------------------ infer */

static uint64_t last_progress_us;

static void progress(const char *phase, size_t done, size_t total)
{
#if TD_EEMBC_PROGRESS_MS > 0
    if (done >= total)
        return; /* the next line follows at once */
    const uint64_t now = now_us();
    if (now - last_progress_us < (uint64_t)TD_EEMBC_PROGRESS_MS * 1000u)
        return;
    last_progress_us = now;
    put("m-progress-[");
    put(phase);
    put(" ");
    put_u64(done);
    put("/");
    put_u64(total);
    put("]\r\n");
#else
    (void)phase; (void)done; (void)total;
#endif
}

/* One inference on the staged input. */
static int run_once(void)
{
    memcpy(td_model_input(0), staged, IN_BYTES);
    return td_model_invoke();
}

static void infer(size_t n, size_t warmups)
{
    if (init_status != 0) {
        put("e-[The model did not initialise (td_model_init returned ");
        put_i64(init_status);
        put(")]\r\n");
        return;
    }
    if (load_tensor() != 0)
        return;
    int status = 0;
    put("m-warmup-start-");
    put_u64(warmups);
    put("\r\n");
    last_progress_us = now_us();
    for (size_t i = 0; i < warmups && status == 0; i++) {
        status = run_once();
        progress("warmup", i + 1, warmups);
    }
    put("m-warmup-done\r\n");
    put("m-infer-start-");
    put_u64(n);
    put("\r\n");
    timestamp();
    last_progress_us = now_us();
    for (size_t i = 0; i < n && status == 0; i++) {
        status = run_once();
        progress("infer", i + 1, n);
    }
    timestamp();
    put("m-infer-done\r\n");
    if (status != 0) {
        have_outputs = 0;
        put("e-[Inference failed (td_model_invoke returned ");
        put_i64(status);
        put(")]\r\n");
        return;
    }
    have_outputs = 1;
    results();
}

/* -------------------------------------------------------------------------------- commands */

/* Like C's atoi: optional blanks and sign, then digits; anything after them is ignored. */
static long to_long(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    int negative = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    long v = 0;
    while (*s >= '0' && *s <= '9') {
        if (v < 100000000L)
            v = v * 10 + (*s - '0');
        s++;
    }
    return negative ? -v : v;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void db_print(void)
{
    for (size_t i = 0; i < db_expected; i++) {
        if (i % 8u == 0)
            put("m-buffer-");
        put_hex_byte(db[i]);
        put((i + 1) % 8u == 0 || i + 1 == db_expected ? "\r\n" : "-");
    }
}

static void db_command(char **tok, int ntok)
{
    if (ntok < 2) {
        error("Command 'db' requires a subcommand");
        return;
    }
    if (strcmp(tok[1], "load") == 0) {
        if (ntok < 3) {
            error("Command 'db load' requires the # of bytes");
            return;
        }
        long n = to_long(tok[2]);
        if (n <= 0) {
            error("Command 'db load' must be >0 bytes");
            return;
        }
        if ((unsigned long)n > DB_CAPACITY) {
            put("e-[Supplied buffer size ");
            put_i64(n);
            put(" exceeds maximum of ");
            put_u64(DB_CAPACITY);
            put("]\r\n");
            return;
        }
        db_expected = (size_t)n;
        db_filled = 0;
        have_outputs = 0;
        put("m-[Expecting ");
        put_u64(db_expected);
        put(" bytes]\r\n");
        return;
    }
    if (strcmp(tok[1], "print") == 0) {
        db_print();
        return;
    }
    const char *hex = tok[1];
    const size_t digits = strlen(hex);
    if (digits % 2u != 0) {
        error("Insufficent number of hex digits");
        return;
    }
    for (size_t i = 0; i < digits; i += 2) {
        const int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            char pair[3] = {hex[i], hex[i + 1], 0};
            put("e-[Invalid hex digit '");
            put(pair);
            put("']\r\n");
            return;
        }
        if (db_filled >= db_expected) {
            error(db_expected ? "More bytes than 'db load' announced; the rest are ignored"
                              : "Command 'db' needs 'db load N' first");
            return;
        }
        db[db_filled++] = (uint8_t)(hi * 16 + lo);
        if (db_filled == db_expected) {
            put("m-load-done\r\n");
            return; /* like the reference: digits after the last byte are disregarded */
        }
    }
}

static void help(void)
{
    put(FW_VERSION "\r\n");
    put("\r\n");
    put("help         : this list\r\n");
    put("name         : the device's name\r\n");
    put("profile      : the firmware version and the model\r\n");
    put("timestamp    : the board's clock in microseconds\r\n");
    put("db load N    : expect N bytes of input\r\n");
    put("db HH[HH]*   : input bytes in hex, until N have arrived\r\n");
    put("db print     : show the input bytes\r\n");
    put("infer N [W]  : W warm-up inferences (default 10), then N timed ones, then the results\r\n");
    put("results      : the last inference's results\r\n");
    put("td-info      : runtime, arena, clock and model hash (tinydeploy)\r\n");
    put("td-outputs   : the raw output tensors in hex (tinydeploy)\r\n");
}

static void td_info(void)
{
    put("m-td-runtime-[");
    put(td_model_runtime_name());
    put("]\r\nm-td-init-[");
    put_i64(init_status);
    put("]\r\nm-td-arena-[");
    put_u64(td_model_arena_used());
    put("]\r\nm-td-clock-[");
    put_u64(td_model_info.clock_hz);
    put("]\r\nm-td-sha256-[");
    for (int i = 0; i < 32; i++)
        put_hex_byte(td_model_info.model_hash[i]);
    put("]\r\n");
}

static void td_outputs(void)
{
    if (!have_outputs) {
        error("No results: run 'infer' first");
        return;
    }
    for (int k = 0; k < td_model_num_outputs(); k++) {
        const uint8_t *p = (const uint8_t *)td_model_output(k);
        const size_t n = td_model_output_size(k);
        put("m-td-output-");
        put_u64((uint64_t)k);
        put("-[");
        for (size_t i = 0; i < n; i++)
            put_hex_byte(p[i]);
        put("]\r\n");
    }
}

#define MAX_TOKENS 4

static void dispatch(char *line)
{
    char *tok[MAX_TOKENS];
    int ntok = 0;
    for (char *p = line; *p != '\0' && ntok < MAX_TOKENS;) {
        while (*p == ' ')
            *p++ = '\0';
        if (*p == '\0')
            break;
        tok[ntok++] = p;
        while (*p != ' ' && *p != '\0')
            p++;
    }
    if (ntok == 0) {
        ready(); /* a lone '%' (hosts send one to flush a half-received command) */
        return;
    }
    if (ntok == MAX_TOKENS) { /* the last token is the rest of the line: cut it at its blank */
        char *blank = strchr(tok[MAX_TOKENS - 1], ' ');
        if (blank != NULL)
            *blank = '\0';
    }
    const char *name = tok[0];
    if (strcmp(name, "name") == 0) {
        put("m-name-dut-[" TD_EEMBC_VENDOR "]\r\n");
    } else if (strcmp(name, "timestamp") == 0) {
        timestamp();
    } else if (strcmp(name, "profile") == 0) {
        put("m-profile-[" FW_VERSION "]\r\n");
        put("m-model-[" TD_EEMBC_MODEL "]\r\n");
    } else if (strcmp(name, "help") == 0) {
        help();
    } else if (strcmp(name, "db") == 0) {
        db_command(tok, ntok);
    } else if (strcmp(name, "infer") == 0) {
        long n = 1, w = 10;
        if (ntok > 1 && (n = to_long(tok[1])) <= 0) {
            error("Inference iterations must be >0");
        } else if (ntok > 2 && (w = to_long(tok[2])) < 0) {
            error("Inference warmup must be >=0");
        } else {
            infer((size_t)n, (size_t)w);
        }
    } else if (strcmp(name, "results") == 0) {
        results();
    } else if (strcmp(name, "td-info") == 0) {
        td_info();
    } else if (strcmp(name, "td-outputs") == 0) {
        td_outputs();
    } else {
        error2("Unknown command: ", name);
    }
    ready();
}

void td_eembc_receive(char c)
{
    if (c == '%') {
        cmd[cmd_len] = '\0';
        if (cmd_too_long)
            put("e-[Command longer than " TD_EEMBC_STR(TD_EEMBC_CMD_BYTES) " characters]\r\nm-ready\r\n");
        else
            dispatch(cmd);
        cmd_len = 0;
        cmd_too_long = 0;
        return;
    }
    if (c == '\r' || c == '\n' || c == '\0')
        return; /* line ends some terminals add are not part of a command */
    if (cmd_len < TD_EEMBC_CMD_BYTES)
        cmd[cmd_len++] = c;
    else
        cmd_too_long = 1;
}

void td_eembc_init(void)
{
    init_status = td_model_init();
    put("m-timestamp-mode-performance\r\n");
    timestamp();
    if (init_status != 0) {
        put("e-[The model did not initialise (td_model_init returned ");
        put_i64(init_status);
        put(")]\r\n");
    }
    put("m-init-done\r\n");
    ready();
}

void td_eembc_serve_forever(void)
{
    td_eembc_init();
    for (;;) {
        const int c = td_hal_read_byte(1000u);
        if (c >= 0)
            td_eembc_receive((char)c);
    }
}
