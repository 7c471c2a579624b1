/*
 * td_tflm_host.cc - a small C API over the TFLM library, for the host reference.
 *
 * tinydeploy validates a device running TFLM against the *same* TFLM library compiled for the host
 * (tinydeploy.tflm_reference loads this file's shared library with ctypes): the same kernels,
 * CMSIS-NN's portable C path, the same arithmetic as the device's build. The op resolver is the
 * device's too: op_resolver.h, generated for the model's ops (a shared library per set of ops, so
 * only their kernels are compiled).
 *
 * TFLM's log (MicroPrintf) is kept in a buffer the host reads after a failure (td_ref_log), since
 * the host's stderr belongs to the tool.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

char g_log[1024];
size_t g_log_len = 0;

}  // namespace

extern "C" void DebugLog(const char *s)
{
    for (; *s != '\0' && g_log_len + 1 < sizeof g_log; s++)
        g_log[g_log_len++] = *s;
    g_log[g_log_len] = '\0';
}

namespace peripherals {
uint32_t MicrosecondsCounter() { return 0; }
}  // namespace peripherals

struct td_ref {
    uint8_t *model;   /* 16-byte aligned copy of the .tflite */
    uint8_t *arena;   /* 16-byte aligned */
    TdOpResolver resolver;
    tflite::MicroInterpreter *interpreter;
    alignas(tflite::MicroInterpreter) uint8_t storage[sizeof(tflite::MicroInterpreter)];
};

extern "C" {

const char *td_ref_log(void) { return g_log; }

void td_ref_destroy(td_ref *ref)
{
    if (ref == nullptr)
        return;
    if (ref->interpreter != nullptr)
        ref->interpreter->~MicroInterpreter();
    free(ref->model);
    free(ref->arena);
    ref->~td_ref();
    free(ref);
}

/* Status: 0 ready, -1 out of host memory, -2 schema version, -3 op registration, -4 AllocateTensors
 * failed. */
td_ref *td_ref_create(const uint8_t *model, size_t len, size_t arena_bytes, int *status)
{
    g_log_len = 0;
    g_log[0] = '\0';
    void *memory = aligned_alloc(16, sizeof(td_ref));
    if (memory == nullptr) {
        *status = -1;
        return nullptr;
    }
    td_ref *ref = new (memory) td_ref();
    ref->interpreter = nullptr;
    ref->model = static_cast<uint8_t *>(aligned_alloc(16, (len + 15) / 16 * 16));
    ref->arena = static_cast<uint8_t *>(aligned_alloc(16, (arena_bytes + 15) / 16 * 16));
    if (ref->model == nullptr || ref->arena == nullptr) {
        td_ref_destroy(ref);
        *status = -1;
        return nullptr;
    }
    memcpy(ref->model, model, len);
    if (td_register_ops(ref->resolver) != kTfLiteOk) {
        td_ref_destroy(ref);
        *status = -3;
        return nullptr;
    }
    const tflite::Model *m = tflite::GetModel(ref->model);
    if (m->version() != TFLITE_SCHEMA_VERSION) {
        td_ref_destroy(ref);
        *status = -2;
        return nullptr;
    }
    ref->interpreter = new (ref->storage) tflite::MicroInterpreter(m, ref->resolver, ref->arena, arena_bytes);
    if (ref->interpreter->AllocateTensors() != kTfLiteOk) {
        td_ref_destroy(ref);
        *status = -4;
        return nullptr;
    }
    *status = 0;
    return ref;
}

int td_ref_num_inputs(const td_ref *ref) { return static_cast<int>(ref->interpreter->inputs_size()); }

int td_ref_num_outputs(const td_ref *ref) { return static_cast<int>(ref->interpreter->outputs_size()); }

uint8_t *td_ref_input(td_ref *ref, int i, size_t *bytes)
{
    TfLiteTensor *t = ref->interpreter->input(static_cast<size_t>(i));
    *bytes = t->bytes;
    return reinterpret_cast<uint8_t *>(t->data.raw);
}

const uint8_t *td_ref_output(td_ref *ref, int i, size_t *bytes)
{
    const TfLiteTensor *t = ref->interpreter->output(static_cast<size_t>(i));
    *bytes = t->bytes;
    return reinterpret_cast<const uint8_t *>(t->data.raw);
}

int td_ref_invoke(td_ref *ref)
{
    g_log_len = 0;
    g_log[0] = '\0';
    return ref->interpreter->Invoke() == kTfLiteOk ? 0 : -5;
}

size_t td_ref_arena_used(const td_ref *ref) { return ref->interpreter->arena_used_bytes(); }

}  /* extern "C" */
