/*
 * td_runtime_tflm.cc - the "tflm" runtime: TensorFlow Lite Micro behind td_runtime.h.
 *
 * The serial protocol only sees td_model_*; this file is the one place that knows TFLM. It has no
 * Arduino (or any board) header, so the same file builds wherever a TFLM library does: PlatformIO
 * projects of real boards, and a bare-metal TFLM build.
 *
 * Generated headers it expects next to it (written by `tinydeploy build`):
 *   model_settings.h  TD_ARENA_BYTES, the tensor arena size (measured arena plus a margin)
 *   model_data.h      TD_MODEL_DATA / TD_MODEL_DATA_LEN, fixed names for the model's C array
 *   op_resolver.h     TdOpResolver (a MicroMutableOpResolver<N>, N = the model's distinct ops)
 *                     and td_register_ops(), one Add<Op>() per op
 *
 * The interpreter is constructed in static storage on the first td_model_init() call (no heap, no
 * static-initialisation-order surprises on boards whose C++ runtime runs constructors late).
 *
 * Where the arena lives (model_settings.h, when it does not fit internal RAM): TD_ARENA_ATTR puts
 * the static array in the board's external RAM (a linker section, e.g. Teensy's EXTMEM), or
 * TD_ARENA_ALLOC says the arena is a block of it that td_model_init() gets from td_arena_alloc()
 * (defined by the firmware's main file with the framework's allocator, e.g. ps_malloc). Neither
 * defined: the plain static array, as always.
 *
 * Built with TD_PROFILE, the interpreter gets a tflite::MicroProfilerInterface that marks the end
 * of each operator of the main graph for OP_TIMINGS (firmware/protocol/td_profile.h); without it
 * the interpreter has no profiler and Invoke() is untouched.
 */
#include <new>

#include "td_runtime.h"

#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifdef TD_PROFILE
#include "td_profile.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#endif

#ifdef TD_ARENA_ALLOC
extern "C" void *td_arena_alloc(size_t bytes);
#endif
#ifndef TD_ARENA_ATTR
#define TD_ARENA_ATTR
#endif

namespace {

/* Negative status codes of td_model_init()/td_model_invoke(), for the protocol's error replies. */
enum TdTflmStatus {
    kTdOk = 0,
    kTdNotInitialised = -1,
    kTdSchemaMismatch = -2,
    kTdOpRegistration = -3,
    kTdAllocateFailed = -4,
    kTdInvokeFailed = -5,
    kTdExternalRamFailed = -6, /* td_arena_alloc() gave no block of external RAM */
};

/* 16-byte alignment: TFLM aligns tensors to 16 and CMSIS-NN/ESP-NN kernels expect it. */
#ifdef TD_ARENA_ALLOC
uint8_t *g_arena = nullptr; /* a block of the board's external RAM, from td_model_init() */
#else
TD_ARENA_ATTR alignas(16) uint8_t g_arena[TD_ARENA_BYTES];
#endif

#ifdef TD_PROFILE
/* TFLM calls BeginEvent/EndEvent around every operator it invokes (micro_graph.cpp), nested for the
 * operators of a subgraph that an op such as WHILE runs: only the main graph's are steps, so op k
 * is the model's operator k and a subgraph's time belongs to the op that ran it. */
class TdStepProfiler : public tflite::MicroProfilerInterface {
 public:
    uint32_t BeginEvent(const char *tag) override {
        (void)tag;
        return ++depth_;
    }
    void EndEvent(uint32_t event_handle) override {
        (void)event_handle;
        if (depth_ > 0 && --depth_ == 0) {
            td_profile_step(next_op_++, 1);
        }
    }
    void Start() {
        depth_ = 0;
        next_op_ = 0;
        td_profile_begin();
    }

 private:
    uint32_t depth_ = 0;
    uint16_t next_op_ = 0;
};

alignas(TdStepProfiler) uint8_t g_profiler_storage[sizeof(TdStepProfiler)];
TdStepProfiler *g_profiler = nullptr;
#endif

alignas(TdOpResolver) uint8_t g_resolver_storage[sizeof(TdOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

tflite::MicroInterpreter *g_interpreter = nullptr; /* set only once init fully succeeded */
int g_init_status = kTdNotInitialised;
bool g_init_attempted = false;

int init_once(void) {
    const tflite::Model *model = tflite::GetModel(TD_MODEL_DATA);
    if (model->version() != TFLITE_SCHEMA_VERSION) {
        return kTdSchemaMismatch;
    }
    TdOpResolver *resolver = new (g_resolver_storage) TdOpResolver();
    if (td_register_ops(*resolver) != kTfLiteOk) {
        return kTdOpRegistration;
    }
#ifdef TD_ARENA_ALLOC
    /* 15 bytes more than the arena, to start it on a 16-byte boundary whatever the block's. */
    uint8_t *block = static_cast<uint8_t *>(td_arena_alloc(TD_ARENA_BYTES + 15));
    if (block == nullptr) {
        return kTdExternalRamFailed;
    }
    g_arena = block + ((16u - (reinterpret_cast<uintptr_t>(block) & 15u)) & 15u);
#endif
#ifdef TD_PROFILE
    g_profiler = new (g_profiler_storage) TdStepProfiler();
    tflite::MicroInterpreter *interpreter = new (g_interpreter_storage)
        tflite::MicroInterpreter(model, *resolver, g_arena, TD_ARENA_BYTES, nullptr, g_profiler);
#else
    tflite::MicroInterpreter *interpreter =
        new (g_interpreter_storage) tflite::MicroInterpreter(model, *resolver, g_arena, TD_ARENA_BYTES);
#endif
    if (interpreter->AllocateTensors() != kTfLiteOk) {
        return kTdAllocateFailed;
    }
    g_interpreter = interpreter;
    return kTdOk;
}

bool valid_input(int i) {
    return g_interpreter != nullptr && i >= 0 && static_cast<size_t>(i) < g_interpreter->inputs_size();
}

bool valid_output(int i) {
    return g_interpreter != nullptr && i >= 0 && static_cast<size_t>(i) < g_interpreter->outputs_size();
}

}  // namespace

/* Idempotent: a second call returns the first call's status (td_link_init() calls it; a test or a
 * custom main() may call it too). */
extern "C" int td_model_init(void) {
    if (!g_init_attempted) {
        g_init_attempted = true;
        g_init_status = init_once();
    }
    return g_init_status;
}

extern "C" int td_model_invoke(void) {
    if (g_interpreter == nullptr) {
        return g_init_attempted ? g_init_status : kTdNotInitialised;
    }
#ifdef TD_PROFILE
    g_profiler->Start();
#endif
    return g_interpreter->Invoke() == kTfLiteOk ? kTdOk : kTdInvokeFailed;
}

extern "C" int td_model_num_inputs(void) {
    return g_interpreter != nullptr ? static_cast<int>(g_interpreter->inputs_size()) : 0;
}

extern "C" int td_model_num_outputs(void) {
    return g_interpreter != nullptr ? static_cast<int>(g_interpreter->outputs_size()) : 0;
}

/* Raw tensor bytes. TFLM keeps a tensor's bytes at data.raw whatever its type (int8, or float32 when
 * built with --io float); the protocol moves bytes and the host interprets them with the specs. */
extern "C" int8_t *td_model_input(int i) {
    return valid_input(i) ? reinterpret_cast<int8_t *>(g_interpreter->input(i)->data.raw) : nullptr;
}

extern "C" size_t td_model_input_size(int i) {
    return valid_input(i) ? g_interpreter->input(i)->bytes : 0;
}

extern "C" const int8_t *td_model_output(int i) {
    return valid_output(i) ? reinterpret_cast<const int8_t *>(g_interpreter->output(i)->data.raw) : nullptr;
}

extern "C" size_t td_model_output_size(int i) {
    return valid_output(i) ? g_interpreter->output(i)->bytes : 0;
}

/* TFLM's own measure of the arena it used (after AllocateTensors); 0 before a successful init. */
extern "C" size_t td_model_arena_used(void) {
    return g_interpreter != nullptr ? g_interpreter->arena_used_bytes() : 0;
}

extern "C" const char *td_model_runtime_name(void) {
    return "tflm";
}
