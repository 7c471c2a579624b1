/*
 * eembc_stub.c - a stand-in runtime for the EEMBC server's host tests (td_runtime.h):
 * int8 [1,8] (scale 0.5, zero point -3) -> int8 [1,8] (scale 1/256, zero point -128), each
 * output byte equal to its input byte, so a test chooses the outputs by what it loads.
 *   - Like the native runtime, invoke overwrites its input: a server that does not refill the
 *     input before every inference gets other outputs from the second one on.
 *   - td_model_arena_used() reports how many inferences ran, so a test can count warm-ups.
 *   - With EEMBC_STUB_INIT_STATUS = N, td_model_init() returns N.
 */
#include "td_runtime.h"

#ifndef EEMBC_STUB_INIT_STATUS
#define EEMBC_STUB_INIT_STATUS 0
#endif

static int8_t input[8];
static int8_t output[8];
static size_t invokes;

int td_model_init(void) { return EEMBC_STUB_INIT_STATUS; }

int td_model_invoke(void)
{
    for (int i = 0; i < 8; i++) {
        output[i] = input[i];
        input[i] = (int8_t)(input[i] + 1); /* clobbered, as the native runtime may do */
    }
    invokes++;
    return 0;
}

int td_model_num_inputs(void) { return 1; }
int td_model_num_outputs(void) { return 1; }
int8_t *td_model_input(int i) { return i == 0 ? input : 0; }
size_t td_model_input_size(int i) { return i == 0 ? sizeof input : 0; }
const int8_t *td_model_output(int i) { return i == 0 ? output : 0; }
size_t td_model_output_size(int i) { return i == 0 ? sizeof output : 0; }
size_t td_model_arena_used(void) { return invokes; }
const char *td_model_runtime_name(void) { return "stub"; }

static const td_tensor_spec_t stub_inputs[1] = {{TD_INT8, 2, {1, 8, 0, 0, 0, 0}, 0.5f, -3}};
static const td_tensor_spec_t stub_outputs[1] = {{TD_INT8, 2, {1, 8, 0, 0, 0, 0}, 0.00390625f, -128}};

const td_model_info_t td_model_info = {
    {0}, 1, 1, stub_inputs, stub_outputs, 25000000u,
};
