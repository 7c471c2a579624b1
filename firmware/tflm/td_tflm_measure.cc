/*
 * td_tflm_measure.cc - how much tensor arena the TFLM library needs for a model, found on the
 * device itself (built and run by tinydeploy.tflm_firmware.measure; never part of a user's firmware).
 *
 * "Needs" means: the smallest arena with which MicroInterpreter::AllocateTensors() succeeds. That is
 * more than arena_used_bytes() reports afterwards, because planning itself takes room (the memory
 * planner's per-buffer records, the allocation info of every tensor) that is given back once the
 * plan is made. It is found by bisection over the arena size, one byte at a time, with a fresh
 * interpreter for each try. The result goes to the semihosting console as "td-measure key=value".
 *
 * TD_ARENA_BYTES (model_settings.h) is the largest arena tried; the arena is 16-byte aligned, as
 * in every tinydeploy firmware, so the number holds for them byte for byte.
 *
 * An arena that is too small is not always refused cleanly: on some allocation failures this
 * library writes through the null pointer it got back. The emulated boards map flash read-only
 * (startup.c), so such a write faults; td_fault_recover() turns the fault into a failed try
 * (longjmp back to the bisection) instead of the end of the run. The count is reported too.
 *
 * It also reports the deepest stack that AllocateTensors() and one Invoke() (on a zeroed input)
 * reach: the stack is painted with a pattern first and the untouched part counted afterwards.
 */
#include <new>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "td_board.h"

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" uint32_t __stack_bottom[], __stack_top[]; /* the linker script's stack reserve */

namespace {

constexpr uint32_t kStackPaint = 0x5EA5ED00u;
constexpr uint32_t kCfsr = 0xE000ED28u;          /* configurable fault status, write 1 to clear */
constexpr uint32_t kXpsrThumb = 0x01000000u;

jmp_buf g_try;
volatile bool g_trying = false;
volatile long g_faults = 0;

alignas(16) uint8_t g_arena[TD_ARENA_BYTES];
alignas(TdOpResolver) uint8_t g_resolver_storage[sizeof(TdOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

/* Does the model initialise in the first `bytes` of the arena? A fault counts as "no" (the
 * interpreter is then abandoned, not destroyed: its storage is simply reused by the next try). */
bool initialises(const tflite::Model *model, const TdOpResolver &resolver, size_t bytes)
{
    if (setjmp(g_try) != 0) {
        g_trying = false;
        return false;
    }
    g_trying = true;
    tflite::MicroInterpreter *interpreter =
        new (g_interpreter_storage) tflite::MicroInterpreter(model, resolver, g_arena, bytes);
    const bool ok = interpreter->AllocateTensors() == kTfLiteOk;
    g_trying = false;
    interpreter->~MicroInterpreter();
    return ok;
}

extern "C" void td_measure_resume_after_fault(void)
{
    longjmp(g_try, 1);
}

/* Fill the free part of the stack (below the current frame) with kStackPaint. */
__attribute__((noinline)) void paint_stack(void)
{
    uint32_t marker;
    for (uint32_t *word = __stack_bottom; word < &marker - 16; word++)
        *word = kStackPaint;
}

/* Bytes of the stack reserve ever used since paint_stack(). */
size_t stack_high_water(void)
{
    const uint32_t *word = __stack_bottom;
    while (word < __stack_top && *word == kStackPaint)
        word++;
    return static_cast<size_t>(reinterpret_cast<const uint8_t *>(__stack_top) -
                               reinterpret_cast<const uint8_t *>(word));
}

void report(const char *key, long value)
{
    char line[48] = "td-measure ";
    size_t at = 11;
    for (const char *k = key; *k != '\0' && at < 30; k++)
        line[at++] = *k;
    line[at++] = '=';
    if (value < 0) {
        line[at++] = '-';
        value = -value;
    }
    char digits[12];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (n > 0)
        line[at++] = digits[--n];
    line[at++] = '\n';
    line[at] = '\0';
    td_semihost_puts(line);
}

}  // namespace

/* startup.c's fault hook: during a try, resume in td_measure_resume_after_fault (thread mode). */
extern "C" int td_fault_recover(uint32_t *frame)
{
    if (!g_trying)
        return 0;
    g_faults = g_faults + 1;
    *reinterpret_cast<volatile uint32_t *>(kCfsr) = 0xFFFFFFFFu;
    frame[6] = reinterpret_cast<uintptr_t>(&td_measure_resume_after_fault) & ~1u; /* pc */
    frame[7] = kXpsrThumb;                                                         /* xpsr */
    return 1;
}

extern "C" int td_tflm_measure(void)
{
    const tflite::Model *model = tflite::GetModel(TD_MODEL_DATA);
    if (model->version() != TFLITE_SCHEMA_VERSION) {
        report("error_schema", static_cast<long>(model->version()));
        return 1;
    }
    TdOpResolver *resolver = new (g_resolver_storage) TdOpResolver();
    if (td_register_ops(*resolver) != kTfLiteOk) {
        report("error_ops", 0);
        return 1;
    }
    if (!initialises(model, *resolver, sizeof g_arena)) {
        report("error_arena_max", static_cast<long>(sizeof g_arena));
        return 1;
    }
    size_t fails = 0, works = sizeof g_arena; /* 0 bytes never work; the whole arena does */
    while (works - fails > 1) {
        const size_t mid = fails + (works - fails) / 2;
        if (initialises(model, *resolver, mid))
            works = mid;
        else
            fails = mid;
    }
    report("arena_min", static_cast<long>(works));
    report("faults", g_faults);

    /* The stack of a real start-up: allocate in the smallest arena, then one inference. */
    paint_stack();
    tflite::MicroInterpreter *interpreter =
        new (g_interpreter_storage) tflite::MicroInterpreter(model, *resolver, g_arena, works);
    if (interpreter->AllocateTensors() != kTfLiteOk) {
        report("error_not_monotonic", static_cast<long>(works));
        return 1;
    }
    report("arena_used", static_cast<long>(interpreter->arena_used_bytes()));
    for (size_t i = 0; i < interpreter->inputs_size(); i++) {
        TfLiteTensor *input = interpreter->input(i);
        for (size_t b = 0; b < input->bytes; b++)
            input->data.raw[b] = 0;
    }
    report("invoke_status", static_cast<long>(interpreter->Invoke()));
    report("stack_used", static_cast<long>(stack_high_water()));
    return 0;
}
