"""The check stage: can this runtime run every op, and do flash and RAM fit the board?

``measure(model_bytes)`` does the expensive part once per model (analysis, TFLM's arena via the
recording allocator, the native runtime's plan); ``check(measured, board, runtime)`` is then cheap,
so ``--board all`` measures once and checks every board.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydeploy import memory
from tinydeploy.analyze import Analysis, analyze
from tinydeploy.boards import BoardProfile

RUNTIMES = ("tflm", "native")


@dataclass(frozen=True)
class Measured:
    """Board-independent facts about one model."""

    model_bytes: bytes
    analysis: Analysis
    tflm: memory.TflmArena
    native: object | None        # tinydeploy.native.NativeEstimate, or None if it cannot compile


def measure(model_bytes: bytes, analysis: Analysis | None = None) -> Measured:
    analysis = analysis or analyze(model_bytes)
    native = _native_estimate(model_bytes)
    tflm = memory.tflm_arena(model_bytes, analysis) if not analysis.tflm_missing else None
    return Measured(model_bytes, analysis, tflm, native)


def _native_estimate(model_bytes: bytes):
    from tinydeploy import native

    return native.estimate(model_bytes)


@dataclass
class Region:
    used: int
    available: int
    parts: dict[str, int]

    @property
    def margin(self) -> int:
        return self.available - self.used

    @property
    def fits(self) -> bool:
        return self.used <= self.available

    def to_dict(self) -> dict:
        return {**self.parts, "used": self.used, "available": self.available,
                "margin": self.margin, "fits": self.fits}


@dataclass
class CheckResult:
    board: BoardProfile
    runtime: str
    arena: int                    # tensor arena the runtime needs (TFLM: measured, 32-bit)
    ram: Region
    flash: Region
    unsupported: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.ram.fits and self.flash.fits and not self.unsupported

    def to_dict(self) -> dict:
        return {"board": self.board.id, "runtime": self.runtime, "fits": self.fits,
                "ram": self.ram.to_dict(), "flash": self.flash.to_dict(),
                "unsupported_ops": self.unsupported, "warnings": self.warnings}

    def verdict(self) -> str:
        """One line: what does not fit (or that everything does), with the numbers."""
        if self.unsupported:
            return (f"{self.board.id}: the {self.runtime} runtime lacks "
                    f"{', '.join(self.unsupported)}")
        bad = [(name, r) for name, r in (("RAM", self.ram), ("flash", self.flash)) if not r.fits]
        if not bad:
            return (f"{self.board.id}: fits (RAM {_pct(self.ram)}, flash {_pct(self.flash)})")
        return f"{self.board.id}: " + "; ".join(
            f"{name} does not fit: needs {r.used:,} B of {r.available:,} B "
            f"(over by {-r.margin:,} B)" for name, r in bad)


def _pct(r: Region) -> str:
    return f"{r.used / r.available:.0%} used, {r.margin:,} B free"


def check(measured: Measured, board: BoardProfile, runtime: str | None = None) -> CheckResult:
    runtime = runtime or board.default_runtime
    a = measured.analysis
    ops = a.distinct_ops
    warnings = [f"op version newer than the pinned TFLM supports: {v}" for v in a.tflm_too_new]
    if a.per_channel_fully_connected:
        # TFLM before ~2024-09 applied channel 0's scale to every channel of a per-channel
        # FULLY_CONNECTED (silently wrong), later releases refuse it; the pinned libraries are 2023.
        warnings.append("FULLY_CONNECTED has per-channel weights, which the pinned 2023 TFLM "
                        "libraries compute wrongly; re-quantize with tinydeploy (per-tensor dense "
                        "weights) or use --runtime native")
    if runtime == "tflm":
        unsupported = list(a.tflm_missing)
        arena = measured.tflm.total if measured.tflm else 0
        ram_parts = {"arena": arena,
                     "arena_margin": memory.arena_with_margin(arena) - arena,
                     "runtime": memory.tflm_runtime_ram(ops)}
        flash_parts = {"model": a.model_bytes, "code": memory.tflm_code_bytes(ops)}
    elif runtime == "native":
        est = measured.native
        unsupported = list(est.unsupported_ops)
        arena = est.arena_bytes
        ram_parts = {"arena": arena, "runtime": memory.PROTOCOL_RAM}
        flash_parts = {"model": est.weights_bytes,
                       "code": est.flash_bytes - est.weights_bytes + memory.NATIVE_LIBC_CODE
                       + memory.PROTOCOL_CODE}
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    ram_parts |= {"stack": board.stack_bytes, "framework": board.framework_ram_bytes}
    flash_parts |= {"framework": board.framework_flash_bytes}
    return CheckResult(board, runtime, arena,
                       Region(sum(ram_parts.values()), board.ram_bytes, ram_parts),
                       Region(sum(flash_parts.values()), board.flash_bytes, flash_parts),
                       unsupported, warnings if runtime == "tflm" else [])
