/*
 * stub_model.c - a tiny stand-in runtime implementing td_runtime.h, so the protocol, the HALs and
 * the runners can be tested without a real model: int8 input [1,IN] -> int8 output [1,OUT] with
 *   out[j] = clamp(in[2j] + in[2j+1] - 3j, -128, 127)
 * (tests/device/conftest.py holds the same formula as the reference). IN = 8 and OUT = 4 unless
 * TD_STUB_INPUT_BYTES / TD_STUB_OUTPUT_BYTES say otherwise (the UART benchmark sends bigger samples).
 * With TD_STUB_SPIN = N on Arm, each invoke also runs exactly 2N instructions (a subs/bne loop),
 * which under QEMU's -icount shift=0 lasts 2N ns of virtual time: a known duration for the clock test.
 * With TD_STUB_FAULT, invoke reads an unmapped address instead: a firmware that crashes mid-run.
 * TD_STUB_TABLE_BYTES = N adds an N-byte constant table that invoke reads (it adds 0), standing in
 * for model weights in the memory-limit tests.
 * TD_STUB_INIT_STATUS = N makes td_model_init() return N (a runtime that failed to initialise, e.g.
 * -4 for TFLM's AllocateTensors), and TD_STUB_RUNTIME names the runtime (default "stub").
 * TD_STUB_PROFILE_STEPS = N makes invoke run N steps as a runtime marks them for OP_TIMINGS: step k
 * starts at op 3k and runs 1 + k % 3 ops (the marks are compiled in only with TD_PROFILE, as in the
 * real runtimes).
 */
#include "td_runtime.h"

#ifdef TD_PROFILE
#include "td_profile.h"
#else
#define td_profile_begin() ((void)0)
#define td_profile_step(op, ops) ((void)0)
#endif

#ifndef TD_STUB_INPUT_BYTES
#define TD_STUB_INPUT_BYTES 8
#endif
#ifndef TD_STUB_OUTPUT_BYTES
#define TD_STUB_OUTPUT_BYTES 4
#endif
#if TD_STUB_INPUT_BYTES < 2 * TD_STUB_OUTPUT_BYTES
#error "the stub needs two input bytes per output byte"
#endif

#ifndef TD_STUB_CLOCK_HZ
#define TD_STUB_CLOCK_HZ 25000000u
#endif

static int8_t input[TD_STUB_INPUT_BYTES];
static int8_t output[TD_STUB_OUTPUT_BYTES];

#ifdef TD_STUB_TABLE_BYTES
/* The one non-zero entry, beyond the 256 ever read, keeps the table in flash rather than in .bss. */
static const int8_t table[TD_STUB_TABLE_BYTES] = {[TD_STUB_TABLE_BYTES - 1] = 1};
#define TABLE_TERM(i) table[(uint8_t)(i)]
#else
#define TABLE_TERM(i) 0
#endif

#ifndef TD_STUB_INIT_STATUS
#define TD_STUB_INIT_STATUS 0
#endif
#ifndef TD_STUB_RUNTIME
#define TD_STUB_RUNTIME "stub"
#endif

int td_model_init(void) { return TD_STUB_INIT_STATUS; }

int td_model_invoke(void)
{
#ifdef TD_STUB_FAULT
    input[0] = *(volatile int8_t *)0xF0000000u;
#endif
#if defined(TD_STUB_SPIN) && defined(__arm__)
    uint32_t n = TD_STUB_SPIN;
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
#endif
#ifdef TD_STUB_PROFILE_STEPS
    td_profile_begin();
    for (int k = 0; k < TD_STUB_PROFILE_STEPS; k++) {
        volatile int spin = 0;
        for (int i = 0; i < 1000; i++)
            spin += i;
        td_profile_step((uint16_t)(3 * k), (uint8_t)(1 + k % 3));
    }
#endif
    for (int j = 0; j < TD_STUB_OUTPUT_BYTES; j++) {
        int v = input[2 * j] + input[2 * j + 1] - 3 * j + TABLE_TERM(input[j]);
        output[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
    }
    return 0;
}

int td_model_num_inputs(void) { return 1; }
int td_model_num_outputs(void) { return 1; }
int8_t *td_model_input(int i) { return i == 0 ? input : 0; }
size_t td_model_input_size(int i) { return i == 0 ? sizeof input : 0; }
const int8_t *td_model_output(int i) { return i == 0 ? output : 0; }
size_t td_model_output_size(int i) { return i == 0 ? sizeof output : 0; }
size_t td_model_arena_used(void) { return sizeof input + sizeof output; }
const char *td_model_runtime_name(void) { return TD_STUB_RUNTIME; }

static const td_tensor_spec_t stub_inputs[1] = {
    {TD_INT8, 2, {1, TD_STUB_INPUT_BYTES, 0, 0, 0, 0}, 0.5f, -3},
};
static const td_tensor_spec_t stub_outputs[1] = {
    {TD_INT8, 2, {1, TD_STUB_OUTPUT_BYTES, 0, 0, 0, 0}, 0.25f, 7},
};

const td_model_info_t td_model_info = {
    {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
     0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f},
    1,
    1,
    stub_inputs,
    stub_outputs,
    TD_STUB_CLOCK_HZ,
};
