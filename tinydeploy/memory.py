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

# TFLM code size on a Cortex-M4 (-Os, reference kernels): interpreter/allocator core and per-kernel
# code, from the builds measured in shared/mlperf_tiny/README.md (core 17.9-19.3 KB; kernels FC 5.4 KB
# alone, IC's six kernels 24.1 KB, VWW's 22.2 KB), split per op so the three builds are reproduced.
TFLM_CORE_CODE = 19_300
TFLM_KERNEL_COMMON_CODE = 2_000           # kernel_util, quantization helpers, shared by all kernels
TFLM_KERNEL_CODE = {
    "CONV_2D": 6_500, "DEPTHWISE_CONV_2D": 4_653, "FULLY_CONNECTED": 3_356, "ADD": 6_500,
    "MUL": 4_000, "AVERAGE_POOL_2D": 2_200, "MAX_POOL_2D": 2_200, "RESHAPE": 600,
    "SOFTMAX": 2_920, "QUANTIZE": 2_000, "DEQUANTIZE": 1_500, "MEAN": 4_000, "PAD": 2_000,
    "CONCATENATION": 2_000, "LOGISTIC": 2_500, "TANH": 2_500, "HARD_SWISH": 2_000,
}
TFLM_KERNEL_CODE_DEFAULT = 4_000          # an op not measured: a typical reference kernel
# newlib + libgcc + libstdc++ pulled in by TFLM (README: 11-13 KB).
C_LIBRARY_CODE = 13_000
# The native runtime needs no libstdc++ and little of newlib (memcpy/memset, no printf).
NATIVE_LIBC_CODE = 1_500
# tinydeploy's device side: serial protocol, CRC, HAL glue.
PROTOCOL_CODE = 3_000
PROTOCOL_RAM = 1_200                      # frame buffers and link state
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


def tflm_arena(model_bytes: bytes, analysis: Analysis, record: AllocationRecord | None = None
               ) -> TflmArena:
    record = record or Reference(model_bytes).allocations()
    saved = _ALLOCATOR_OBJECTS_32BIT
    for category, per_alloc in _PERSISTENT_32BIT.items():
        saved += per_alloc * record.count(category)
    saved += sum(_OPDATA_32BIT.get(op.op, 0) for op in analysis.ops)
    persistent = max(record.tail - saved, 0)
    return TflmArena(record, persistent, record.head)


def arena_with_margin(arena_bytes: int) -> int:
    """The arena size a firmware reserves: the need plus 5 % (at least 512 B), 16-byte aligned.

    The margin covers what the host measurement cannot see (a different TFLM release's OpData,
    alignment of the arena start) so that AllocateTensors() does not fail on the board.
    """
    need = arena_bytes + max(arena_bytes // 20, 512)
    return (need + 15) // 16 * 16


def tflm_code_bytes(ops: list[str], core: str = "cortex-m4f") -> int:
    kernels = sum(TFLM_KERNEL_CODE.get(op, TFLM_KERNEL_CODE_DEFAULT) for op in ops)
    code = TFLM_CORE_CODE + TFLM_KERNEL_COMMON_CODE + kernels + C_LIBRARY_CODE
    return int(code * _thumb_factor(core)) + PROTOCOL_CODE


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


def estimate_tflm_arena(arena: TflmArena, analysis: Analysis, board) -> int:
    """The arena the board's TFLM library needs to initialise, without that library at hand."""
    return arena_with_margin(arena.total)


def tflm_runtime_ram(ops: list[str]) -> int:
    return TFLM_RUNTIME_RAM_BASE + TFLM_RUNTIME_RAM_PER_OP * len(ops) + PROTOCOL_RAM
