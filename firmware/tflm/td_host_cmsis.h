/*
 * td_host_cmsis.h - the one CMSIS-Core intrinsic that CMSIS-NN's portable C path still calls,
 * for the host build of the TFLM library (the reference; tinydeploy.tflm_lib forces this header
 * into every file of that build). On Arm, cmsis_gcc.h defines __CLZ as the CLZ instruction, which
 * gives 32 for 0; __builtin_clz(0) is undefined, hence the test.
 */
#ifndef TD_HOST_CMSIS_H
#define TD_HOST_CMSIS_H

#include <stdint.h>

static inline uint8_t __CLZ(uint32_t value)
{
    return value == 0u ? 32u : (uint8_t)__builtin_clz(value);
}

#endif /* TD_HOST_CMSIS_H */
