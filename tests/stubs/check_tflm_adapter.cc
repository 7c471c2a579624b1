/* Host harness for td_runtime_tflm.cc against the stub TFLM headers (see README.md).
 * Built by tests/test_platformio_project.py with a generated op_resolver.h, a model_data.h naming
 * g_stub_model and a model_settings.h; TD_EXPECT_INIT is the status td_model_init() must return.
 * Prints the ops the generated resolver registered ("op NAME"), then "ok" if every check passed. */
#include <cstdio>
#include <cstring>

#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "td_runtime.h"

#ifndef TD_STUB_SCHEMA
#define TD_STUB_SCHEMA 3
#endif

extern "C" {
alignas(4) const unsigned char g_stub_model[4] = {TD_STUB_SCHEMA, 0, 0, 0};
const unsigned int g_stub_model_len = 4;
}

static int failures = 0;
#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            std::printf("FAILED line %d: %s\n", __LINE__, #cond);         \
            ++failures;                                                   \
        }                                                                 \
    } while (0)

static void list_registered_ops(void) {
    TdOpResolver resolver;
    CHECK(td_register_ops(resolver) == kTfLiteOk);
    for (unsigned int i = 0; i < resolver.registered_count(); ++i) {
        std::printf("op %s\n", resolver.registered(i));
    }
}

static void check_before_init(void) {
    CHECK(td_model_num_inputs() == 0);
    CHECK(td_model_input(0) == nullptr);
    CHECK(td_model_output_size(0) == 0);
    CHECK(td_model_arena_used() == 0);
    CHECK(td_model_invoke() < 0);
}

static void check_inference(void) {
    CHECK(td_model_num_inputs() == 1);
    CHECK(td_model_num_outputs() == 1);
    CHECK(td_model_arena_used() == TD_ARENA_BYTES / 2);
    CHECK(td_model_input_size(0) == 4);
    CHECK(td_model_output_size(0) == 2);
    CHECK(td_model_input(1) == nullptr && td_model_input(-1) == nullptr);
    CHECK(td_model_output(1) == nullptr && td_model_input_size(7) == 0);
    int8_t *in = td_model_input(0);
    const int8_t sample[4] = {1, 2, 3, 4};
    std::memcpy(in, sample, sizeof sample);
    CHECK(td_model_invoke() == 0);
    const int8_t *out = td_model_output(0);
    CHECK(out[0] == 10 && out[1] == 2);
}

int main(void) {
    list_registered_ops();
    check_before_init();
    const int status = td_model_init();
    CHECK(status == TD_EXPECT_INIT);
    CHECK(td_model_init() == status); /* idempotent */
    if (status == 0) {
        check_inference();
    } else {
        check_before_init(); /* a failed init leaves the runtime refusing, not crashing */
        CHECK(td_model_invoke() == status);
    }
    CHECK(std::strcmp(td_model_runtime_name(), "tflm") == 0);
    if (failures == 0) std::printf("ok\n");
    return failures == 0 ? 0 : 1;
}
