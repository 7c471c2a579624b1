/* Test stub (see tests/stubs/README.md): the slice of TFLite's schema the runtime adapter uses. */
#ifndef TD_STUB_SCHEMA_GENERATED_H
#define TD_STUB_SCHEMA_GENERATED_H

#include <cstdint>

namespace tflite {

class Model {
 public:
    uint32_t version() const { return version_; }
    uint32_t version_;
};

/* The stub reads the schema version from the model's first 4 bytes (little-endian). */
inline const Model *GetModel(const void *buf) { return static_cast<const Model *>(buf); }

}  // namespace tflite

#endif
