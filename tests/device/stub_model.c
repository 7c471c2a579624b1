/*
 * stub_model.c - a tiny stand-in runtime implementing td_runtime.h, so the protocol, the HALs and
 * the runners can be tested without a real model: int8 input [1,8] -> int8 output [1,4] with
 *   out[j] = clamp(in[2j] + in[2j+1] - 3j, -128, 127)
 * (tests/device/conftest.py holds the same formula as the reference).
 */
#include "td_runtime.h"

#ifndef TD_STUB_CLOCK_HZ
#define TD_STUB_CLOCK_HZ 25000000u
#endif

static int8_t input[8];
static int8_t output[4];

int td_model_init(void) { return 0; }

int td_model_invoke(void)
{
    for (int j = 0; j < 4; j++) {
        int v = input[2 * j] + input[2 * j + 1] - 3 * j;
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
const char *td_model_runtime_name(void) { return "stub"; }

static const td_tensor_spec_t stub_inputs[1] = {
    {TD_INT8, 2, {1, 8, 0, 0, 0, 0}, 0.5f, -3},
};
static const td_tensor_spec_t stub_outputs[1] = {
    {TD_INT8, 2, {1, 4, 0, 0, 0, 0}, 0.25f, 7},
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
