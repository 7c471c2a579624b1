/* Test stub (see tests/stubs/README.md): MicroInterpreter with the real (2023, no ErrorReporter)
 * constructor and accessors. It fakes a model with one 4-byte input and one 2-byte output; Invoke()
 * writes (sum of input bytes, input[0] + 1) to the output. AllocateTensors() fails when the arena is
 * smaller than 64 bytes and reports half the arena as used. */
#ifndef TD_STUB_MICRO_INTERPRETER_H
#define TD_STUB_MICRO_INTERPRETER_H

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define TFLITE_SCHEMA_VERSION (3)

typedef union TfLitePtrUnion {
    int8_t *int8;
    float *f;
    char *raw;
} TfLitePtrUnion;

typedef struct TfLiteTensor {
    TfLitePtrUnion data;
    size_t bytes;
} TfLiteTensor;

namespace tflite {

class MicroInterpreter {
 public:
    MicroInterpreter(const Model *model, const MicroOpResolver &op_resolver, uint8_t *tensor_arena,
                     size_t tensor_arena_size)
        : model_(model), resolver_(op_resolver), arena_(tensor_arena), arena_size_(tensor_arena_size) {}

    TfLiteStatus AllocateTensors() {
        if (model_ == nullptr || resolver_.registered_count() == 0 || arena_size_ < 64) return kTfLiteError;
        input_.data.raw = reinterpret_cast<char *>(arena_);
        input_.bytes = 4;
        output_.data.raw = reinterpret_cast<char *>(arena_ + 16);
        output_.bytes = 2;
        return kTfLiteOk;
    }

    TfLiteStatus Invoke() {
        int sum = 0;
        for (size_t i = 0; i < input_.bytes; ++i) sum += input_.data.int8[i];
        output_.data.int8[0] = static_cast<int8_t>(sum);
        output_.data.int8[1] = static_cast<int8_t>(input_.data.int8[0] + 1);
        return kTfLiteOk;
    }

    TfLiteTensor *input(size_t index) { return index == 0 ? &input_ : nullptr; }
    TfLiteTensor *output(size_t index) { return index == 0 ? &output_ : nullptr; }
    size_t inputs_size() const { return 1; }
    size_t outputs_size() const { return 1; }
    size_t arena_used_bytes() const { return arena_size_ / 2; }

 private:
    const Model *model_;
    const MicroOpResolver &resolver_;
    uint8_t *arena_;
    size_t arena_size_;
    TfLiteTensor input_ = {};
    TfLiteTensor output_ = {};
};

}  // namespace tflite

#endif
