"""How much RAM and flash a model needs on a 32-bit MCU, per runtime.

TFLM's tensor arena is *measured*, not guessed: TFLM's own recording allocator (through the
``tflite_micro`` interpreter) plans the real model on this host. Its two parts convert differently:

* the non-persistent part (activations, scratch) is planned in bytes of tensor data, so it is the
  same on every target;
* the persistent part holds runtime structs whose pointer and ``size_t`` fields are 8 bytes here
  and 4 bytes on a Cortex-M. We convert it category by category (see ``_PERSISTENT_32BIT``).

The struct conversions follow the TFLM structs' layouts (LP64 here, ILP32 on the MCU). Two terms
cannot be derived from struct layouts alone, because the host interpreter uses a
*Recording*MicroAllocator (larger allocator objects than the device's plain MicroAllocator) and its
kernels' OpData differ by build flags: the fixed allocator-object term and the FULLY_CONNECTED
OpData term. Those two were calibrated against TFLM's ``arena_used_bytes()`` measured on an emulated
Cortex-M4 for the three MLPerf Tiny models (shared/mlperf_tiny/README.md: IC 54,340, AD 2,260,
VWW 100,660 B), rounded so the estimate is never below those measurements; it lands 0.02-0.8 %
above them (tests/test_memory.py holds it to [0, +2 %]).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinydeploy.analyze import Analysis
from tinydeploy.reference import AllocationRecord, Reference

# Bytes saved per allocation when a 64-bit host struct becomes its 32-bit MCU counterpart.
_PERSISTENT_32BIT = {
    # TfLiteEvalTensor {void* data; TfLiteIntArray* dims; TfLiteType type;}: 24 -> 12
    "TfLiteEvalTensor data": 12,
    # NodeAndRegistration {TfLiteNode (6 pointers + int); const TFLMRegistration*}: 64 -> 32
    "NodeAndRegistration struct": 32,
    # TfLiteTensor (static-memory build) of each model input/output: 64 -> 40
    "Persistent TfLiteTensor data": 24,
    # TfLiteAffineQuantization {TfLiteFloatArray*; TfLiteIntArray*; int32}: 24 -> 12, counted once
    # per tensor (the recording counts the struct and its zero-point array: 2 allocations)
    "Persistent TfLiteTensor quantization data": 6,
}
# Kernel OpData structs are allocated 16-byte aligned; their pointer fields (per-channel multiplier
# and shift arrays) shrink, which drops the aligned size by one 16-byte step for conv kernels.
_OPDATA_32BIT = {"CONV_2D": 16, "DEPTHWISE_CONV_2D": 16, "TRANSPOSE_CONV": 16,
                 "FULLY_CONNECTED": 55}
# RecordingMicroAllocator + recording arena allocator + planner + builtin-data allocator objects on
# this host, minus the plain MicroAllocator's on the MCU (calibrated, see module doc).
_ALLOCATOR_OBJECTS_32BIT = 392

# TFLM code on a Cortex-M4 when the library is not at hand to measure (bench/tflm_code.py, pinned
# Arduino_TensorFlowLite 07d1cca, -Os, CMSIS-NN): a firmware with the interpreter, allocator, port,
# newlib and libstdc++ pieces and only the tiny RESHAPE kernel is 30,020 B; each kernel adds its
# own code and the helpers it pulls in. Summing kernels counts shared helpers twice, so the
# estimate is on the safe side (IC +11 %, VWW +13 %, a fully connected model exact).
TFLM_CORE_CODE = 30_020
TFLM_KERNEL_CODE = {
    "CONV_2D": 14_588, "DEPTHWISE_CONV_2D": 12_904, "FULLY_CONNECTED": 9_576, "ADD": 7_972,
    "MUL": 7_900, "SUB": 5_940, "AVERAGE_POOL_2D": 3_028, "MAX_POOL_2D": 3_220, "SOFTMAX": 9_600,
    "LOGISTIC": 6_112, "TANH": 6_320, "HARD_SWISH": 2_792, "RELU": 2_544, "RELU6": 372,
    "LEAKY_RELU": 3_132, "PRELU": 3_328, "QUANTIZE": 4_148, "DEQUANTIZE": 1_012, "MEAN": 6_292,
    "PAD": 2_972, "CONCATENATION": 1_904, "STRIDED_SLICE": 3_508, "TRANSPOSE_CONV": 8_368,
    "RESIZE_NEAREST_NEIGHBOR": 1_788, "SVDF": 10_536, "UNIDIRECTIONAL_SEQUENCE_LSTM": 14_760,
    "MAXIMUM": 764, "MINIMUM": 764, "TRANSPOSE": 124, "SPLIT": 184, "PACK": 0, "RESHAPE": 0,
}
TFLM_KERNEL_CODE_DEFAULT = 8_000          # an op not measured: about a mid-sized kernel
# The native runtime needs no libstdc++ and little of newlib (memcpy/memset, no printf).
NATIVE_LIBC_CODE = 1_500
# tinydeploy's device side: serial protocol, CRC, HAL glue.
PROTOCOL_CODE = 3_000
# firmware/protocol/td_link.c's .data + .bss on a Cortex-M4 (-O2): 2,078 B, two frame buffers of
# max_payload + 10 B (TD_LINK_MAX_PAYLOAD 1024) and the link state.
PROTOCOL_RAM = 2_100
# TFLM objects outside the arena (.bss): MicroInterpreter, allocator handle, op resolver
# (MicroMutableOpResolver<N> keeps N registrations of ~40 B each).
TFLM_RUNTIME_RAM_BASE = 600
TFLM_RUNTIME_RAM_PER_OP = 40


@dataclass(frozen=True)
class TflmArena:
    """TFLM's tensor arena for a 32-bit MCU, derived from the host measurement."""

    host: AllocationRecord
    persistent: int              # persistent part on the MCU
    non_persistent: int          # activations + scratch (identical on host and MCU)

    @property
    def total(self) -> int:
        return self.persistent + self.non_persistent

    def to_dict(self) -> dict:
        return {"total": self.total, "non_persistent": self.non_persistent,
                "persistent": self.persistent, "host_64bit_total": self.host.total,
                "host_64bit_persistent": self.host.tail}


def allocation_record(model_bytes: bytes) -> AllocationRecord:
    """TFLM's recording allocator on this model, run in tinydeploy's worker process: a model that
    crashes TFLM's Prepare (an abort in a kernel) is one error line, not the end of the tool."""
    from tinydeploy import isolation

    if isolation.in_worker():
        return Reference(model_bytes).allocations()
    return isolation.run("tinydeploy.memory", "allocation_record", model_bytes,
                         crash_fix="TFLM crashed preparing this model on the host; check it with "
                                   "'tinydeploy inspect' (a degenerate quantization, an op version "
                                   "TFLM lacks) and that the model is trained")


def tflm_arena(model_bytes: bytes, analysis: Analysis, record: AllocationRecord | None = None
               ) -> TflmArena:
    record = record or allocation_record(model_bytes)
    saved = _ALLOCATOR_OBJECTS_32BIT
    for category, per_alloc in _PERSISTENT_32BIT.items():
        saved += per_alloc * record.count(category)
    saved += sum(_OPDATA_32BIT.get(op.op, 0) for op in analysis.ops)
    persistent = max(record.tail - saved, 0)
    return TflmArena(record, persistent, record.head)


def tflm_code_bytes(ops: list[str], core: str = "cortex-m4f") -> int:
    """Estimated flash of TFLM's code for the distinct ``ops`` on ``core``, plus the protocol."""
    kernels = sum(TFLM_KERNEL_CODE.get(op, TFLM_KERNEL_CODE_DEFAULT) for op in dict.fromkeys(ops))
    return int((TFLM_CORE_CODE + kernels) * _thumb_factor(core)) + PROTOCOL_CODE


#: Stack the serial protocol adds on top of the runtime's deepest call chain (frame handling).
PROTOCOL_STACK = 512
#: Cores with only the 16-bit Thumb instruction set (ARMv6-M, ARMv8-M baseline): the same C takes
#: more instructions than on a Thumb-2 core, where the code is measured. A safe-side factor.
_THUMB1_CORES = ("cortex-m0", "cortex-m0plus", "cortex-m1", "cortex-m23")
_THUMB1_CODE_FACTOR = 1.3


def _thumb_factor(core: str) -> float:
    return _THUMB1_CODE_FACTOR if core.lower() in _THUMB1_CORES else 1.0


def aligned_arena(arena_bytes: int) -> int:
    """The arena a firmware reserves for a measured need: rounded up to TFLM's 16-byte alignment."""
    return (arena_bytes + 15) // 16 * 16


def measured_tflm_code(code_bytes: int, core: str) -> int:
    """Flash for TFLM's code on ``core`` from a measurement on a Thumb-2 core, plus the protocol."""
    return int(code_bytes * _thumb_factor(core)) + PROTOCOL_CODE


# The arena estimate when the library is not at hand (bench/tflm_memory.py compares it with the
# pinned library's measured needs on ten models: 1.03-1.06x on the larger ones, up to 1.5x on a
# 1 KB one, never below). From the tflite_micro wheel's record converted to 32 bits, plus:
#: what the 2023 library's kernels keep per op beyond the wheel's (OpData, CMSIS-NN contexts);
LIBRARY_OPDATA_PER_OP = 56
#: while AllocateTensors() plans, it also holds an allocation record per tensor and the memory
#: planner's per-buffer lists, given back once planned: this peak decides small models' arenas.
PLANNING_PER_TENSOR = 24
PLANNING_PER_BUFFER = 40


def cmsis_nn_scratch(analysis: Analysis, dsp: bool) -> int:
    """The largest scratch buffer a CMSIS-NN kernel of the model asks for (arm_*_get_buffer_size):
    convolutions other than 1x1 stride 1 keep an im2col buffer of 2 x in_ch x kh x kw int16s;
    depthwise convolutions with a depth multiplier of 1 one of in_ch x kh x kw int16s on DSP cores.
    Counted whole, as if it could not share the arena with activations (the safe side)."""
    largest = 0
    for op in analysis.ops:
        if len(op.input_shapes) < 2 or len(op.input_shapes[1]) != 4 or not op.output_shapes:
            continue
        x, w, y = op.input_shapes[0], op.input_shapes[1], op.output_shapes[0]
        if op.op == "CONV_2D":
            _, kh, kw, in_ch = w
            pointwise = kh == kw == 1 and tuple(x[1:3]) == tuple(y[1:3])
            if not pointwise:
                largest = max(largest, 2 * in_ch * kh * kw * 2)
        elif op.op == "DEPTHWISE_CONV_2D" and dsp:
            _, kh, kw, out_ch = w
            if x[-1] == out_ch:
                largest = max(largest, out_ch * kh * kw * 2)
    return largest


def estimate_tflm_arena(arena: TflmArena, analysis: Analysis, board) -> int:
    """The arena the board's TFLM library needs to initialise, without that library at hand:
    never below what the pinned library needs (see bench/tflm_memory.py), 16-byte aligned."""
    from tinydeploy.tflm_firmware import has_dsp

    ops = len(analysis.ops)
    scratch = cmsis_nn_scratch(analysis, has_dsp(board.core)) if board.tflm.kernels == "cmsis_nn" else 0
    in_use = arena.total + scratch + LIBRARY_OPDATA_PER_OP * ops
    buffers = ops + len(analysis.inputs)
    planning = (arena.persistent + LIBRARY_OPDATA_PER_OP * ops
                + PLANNING_PER_TENSOR * analysis.tensor_count + PLANNING_PER_BUFFER * buffers)
    return aligned_arena(max(in_use + 16, planning))


def tflm_runtime_ram(ops: list[str]) -> int:
    return TFLM_RUNTIME_RAM_BASE + TFLM_RUNTIME_RAM_PER_OP * len(ops) + PROTOCOL_RAM
