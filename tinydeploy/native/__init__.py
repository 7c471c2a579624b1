"""The native runtime: int8 .tflite models compiled to dependency-free C99, bit-exact with TFLM.

API:
- :func:`compile_model` writes ``<name>.c`` / ``<name>.h`` and the kernel sources they need.
- :func:`estimate` reports arena bytes, estimated flash bytes and unsupported ops, without writing
  anything (for ``check`` / ``inspect``).
- :data:`SUPPORTED_OPS` names the ops the native runtime runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tinydeploy import tflite
from tinydeploy.errors import ModelError
from tinydeploy.native import emitter
from tinydeploy.native.cgen import decl_bytes
from tinydeploy.native.compiler import Program, TensorPlan, build_program, lowerings, unsupported_ops

__all__ = ["SUPPORTED_OPS", "CompileResult", "NativeEstimate", "compile_model", "estimate"]

SUPPORTED_OPS: frozenset[str] = frozenset(lowerings())

# .text + .rodata of each kernel family, arm-none-eabi-gcc 12.2 -Os -mcpu=cortex-m4 -mthumb
# (checked by tests/native/test_build.py, which fails when these drift by more than 25%).
KERNEL_FLASH_BYTES = {
    "td_conv": 708, "td_depthwise": 830, "td_fully_connected": 164, "td_pool": 840,
    "td_elementwise": 784, "td_mean": 278, "td_pad": 244, "td_concat": 62, "td_quantize": 348,
    "td_softmax": 238, "td_activation": 1216, "td_gemm": 578, "td_stream": 66, "td_qmath": 266,
}
# Per op: the kernel call in td_model_invoke, roughly (parameters are counted from the C).
OP_CALL_FLASH_BYTES = 24


@dataclass
class CompileResult:
    """What ``compile_model`` wrote and decided."""

    files: list[Path]
    arena_bytes: int
    scratch_bytes: int
    ops_used: list[str]
    kernel_sources: list[str]
    tensors: list[TensorPlan] = field(default_factory=list)
    weights_bytes: int = 0
    in_place_ops: list[int] = field(default_factory=list)  # ops writing over their dying input


@dataclass
class NativeEstimate:
    """RAM and flash the native runtime needs for a model (flash estimated, RAM exact)."""

    arena_bytes: int
    flash_bytes: int
    weights_bytes: int
    unsupported_ops: list[str]
    problem: str | None = None     # why the model cannot run natively, one line

    @property
    def supported(self) -> bool:
        return not self.unsupported_ops and self.problem is None


def _weights_bytes(program: Program) -> int:
    return sum(p.nbytes for p in program.tensors.values() if p.place == "flash")


def compile_model(model_bytes: bytes, out_dir: Path, *, name: str = "model",
                  arena: str | None = None, profile: bool = False) -> CompileResult:
    """Compile an int8 .tflite into C99 sources in out_dir.

    ``arena`` puts the arena in a board's external RAM ("static": an array with TD_ARENA_ATTR from
    model_settings.h; "heap": a block from td_arena_alloc() at td_model_init()); ``profile`` adds
    the step marks a TD_PROFILE build times (OP_TIMINGS). With neither, the C is what it always was.

    Raises UnsupportedOpError (naming the op) for what the native runtime cannot run and
    ModelError for an unreadable model.
    """
    program = build_program(tflite.parse(model_bytes))
    files = emitter.write(program, Path(out_dir), name, arena=arena, profile=profile)
    return CompileResult(
        files=files, arena_bytes=program.arena.size, scratch_bytes=0,
        ops_used=program.ops_used, kernel_sources=emitter.kernel_files(program.families),
        tensors=sorted(program.tensors.values(), key=lambda p: p.index),
        weights_bytes=_weights_bytes(program),
        in_place_ops=sorted({ov.op for ov in program.arena.overlaps_used}))


def estimate(model_bytes: bytes) -> NativeEstimate:
    """Arena bytes (exact) and flash bytes (weights exact + kernels estimated) of the model."""
    model = tflite.parse(model_bytes)
    missing = unsupported_ops(model)
    if missing:
        return NativeEstimate(arena_bytes=0, flash_bytes=0, weights_bytes=0,
                              unsupported_ops=missing,
                              problem=f"no native kernel for {', '.join(missing)}")
    try:
        program = build_program(model)
    except ModelError as err:  # an op variant the kernels cannot run, or the graph's structure
        return NativeEstimate(arena_bytes=0, flash_bytes=0, weights_bytes=0,
                              unsupported_ops=[getattr(err, "opcode", "model structure")],
                              problem=err.problem)
    weights = _weights_bytes(program)
    # Constants the emitter writes as they are, plus each op's own definitions (parameters and,
    # for convolutions and fully connected layers, the weights in their kernel's layout).
    plain = sum(p.nbytes for i, p in program.tensors.items() if i in program.constants)
    code = sum(KERNEL_FLASH_BYTES[f] for f in emitter.kernel_families(program.families))
    code += sum(OP_CALL_FLASH_BYTES + sum(decl_bytes(d) for d in lowered.decls)
                for _, lowered in program.steps if lowered.family is not None)
    return NativeEstimate(arena_bytes=program.arena.size, flash_bytes=plain + code,
                          weights_bytes=weights, unsupported_ops=[])
