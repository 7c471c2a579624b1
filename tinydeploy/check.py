"""The check stage: can this runtime run every op, and do flash and RAM fit the board?

``measure(model_bytes)`` does the expensive part once per model (analysis, TFLM's arena via the
recording allocator, the native runtime's plan); ``check(measured, board, runtime)`` is then cheap,
so ``--board all`` measures once and checks every board.

When the arena does not fit the board's internal RAM but the board declares external RAM
(``[external_ram]``: PSRAM or SDRAM) that holds it while everything else still fits inside, the
arena is placed there: the verdict says so with the board's speed caveat, and the RAM parts are
split into internal RAM and the external region (:attr:`CheckResult.external`). The renderer then
puts the arena there with the framework's own attribute or allocator (tinydeploy.render).

For the tflm runtime, what a board needs depends on the TFLM library it runs. When that library is
at hand (``measure(..., library=...)``) and the board's kernels are the ones it builds (CMSIS-NN on
Arm), the arena and code are *measured* with it on an emulated core of the board's family
(tinydeploy.tflm_firmware.measure, once per core family, cached): the arena is the smallest with
which the model initialises. Otherwise they are estimated (tinydeploy.memory), on the safe side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydeploy import memory
from tinydeploy.analyze import Analysis, analyze
from tinydeploy.boards import BoardProfile, ExternalRam

RUNTIMES = ("tflm", "native")


@dataclass(frozen=True)
class Measured:
    """Board-independent facts about one model (and, per core family, what the TFLM library at
    hand needs for it, measured the first time a board asks)."""

    model_bytes: bytes
    analysis: Analysis
    tflm: memory.TflmArena
    native: object | None        # tinydeploy.native.NativeEstimate, or None if it cannot compile
    library: object | None = None    # tinydeploy.tflm_lib.TflmLibrary to measure TFLM with
    progress: object | None = field(default=None, compare=False, repr=False)  # callable(str)
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)

    def tflm_on(self, board: BoardProfile):
        """The TFLM library's own figures for this board's core family
        (tinydeploy.tflm_firmware.TflmMeasurement), or None when they cannot be measured here:
        no library, a board whose library or kernels are not the one at hand (ESP-NN on the
        ESP32s), no Arm toolchain or QEMU, or a model the library lacks ops for."""
        from tinydeploy import tflm_firmware

        if (self.library is None or self.analysis.tflm_missing
                or not tflm_firmware.can_measure(board, self.library)):
            return None
        dsp = tflm_firmware.has_dsp(board.core)
        if dsp not in self._on_device:
            self._on_device[dsp] = tflm_firmware.measure(
                self.model_bytes, self.analysis.distinct_ops, self.library, dsp, self.progress)
        return self._on_device[dsp]


def measure(model_bytes: bytes, analysis: Analysis | None = None, library=None,
            progress=None) -> Measured:
    analysis = analysis or analyze(model_bytes)
    native = _native_estimate(model_bytes)
    tflm = memory.tflm_arena(model_bytes, analysis) if not analysis.tflm_missing else None
    return Measured(model_bytes, analysis, tflm, native, library, progress)


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
    # how the arena and code were found: "planned" (native), "measured ..." or "estimated ..." (tflm)
    source: str = ""
    # why the runtime cannot run on this board at all (the profile's [tflm]/[native] reason), or ""
    unavailable: str = ""
    # the board's external RAM holding the arena (its only part), when the arena does not fit
    # internal RAM but fits there; None: the arena is in internal RAM (``ram``)
    external: Region | None = None

    @property
    def fits(self) -> bool:
        return (self.ram.fits and self.flash.fits and (self.external is None or self.external.fits)
                and not self.unsupported and not self.unavailable)

    @property
    def arena_external(self) -> bool:
        """Whether the arena goes to the board's external RAM (``board.external_ram``)."""
        return self.external is not None

    def to_dict(self) -> dict:
        ext = self.board.external_ram
        return {"board": self.board.id, "runtime": self.runtime, "fits": self.fits,
                "available": not self.unavailable, "unavailable_reason": self.unavailable or None,
                "ram": self.ram.to_dict(), "flash": self.flash.to_dict(),
                "arena_placement": "external" if self.external else "internal",
                "external_ram": None if self.external is None else self.external.to_dict() | {
                    "kind": ext.kind, "placement": ext.placement, "optional": ext.optional,
                    "address": None if ext.address is None else f"0x{ext.address:08X}",
                    "speed": ext.speed},
                "unsupported_ops": self.unsupported, "warnings": self.warnings,
                "source": self.source}

    def verdict(self) -> str:
        """One line: what does not fit (or that everything does), with the numbers."""
        if self.unavailable:
            return (f"{self.board.id}: the {self.runtime} runtime is not available on this board: "
                    f"{self.unavailable}")
        if self.unsupported:
            return (f"{self.board.id}: the {self.runtime} runtime lacks "
                    f"{', '.join(self.unsupported)}")
        bad = [(name, r) for name, r in (("RAM", self.ram), ("flash", self.flash)) if not r.fits]
        if not bad:
            where = f"with the arena in {external_words(self.board.external_ram)} " if self.external else ""
            return (f"{self.board.id}: fits {where}(RAM {_pct(self.ram)}, flash {_pct(self.flash)})")
        text = f"{self.board.id}: " + "; ".join(
            f"{name} does not fit: needs {r.used:,} B of {r.available:,} B "
            f"(over by {-r.margin:,} B)" for name, r in bad)
        ext = self.board.external_ram
        if ext is not None and not self.ram.fits:
            rest = self.ram.used - self.arena
            why = (f"the arena ({self.arena:,} B) is larger" if self.arena > ext.bytes else
                   f"the rest of RAM ({rest:,} B without the arena) does not fit internal RAM")
            text += f" (external {ext.kind.upper()} of {_size(ext.bytes)} does not help: {why})"
        return text


def _pct(r: Region) -> str:
    return f"{r.used / r.available:.0%} used, {r.margin:,} B free"


def _size(n: int) -> str:
    mb = n / (1 << 20)
    return f"{mb:g} MB" if n >= 1 << 20 and mb == round(mb, 1) else f"{n:,} B"


def external_words(ext: ExternalRam) -> str:
    """The board's external RAM in words, with its speed caveat: "external PSRAM (8 MB at
    0x70000000, fitted on some boards only; quad SPI PSRAM ...: several times slower ...)"."""
    where = f" at 0x{ext.address:08X}" if ext.address is not None else ""
    fitted = ", on boards that have it fitted" if ext.optional else ""
    return f"external {ext.kind.upper()} ({_size(ext.bytes)}{where}{fitted}; {ext.speed})"


def place_arena(board: BoardProfile, arena: int, ram_parts: dict[str, int]
                ) -> tuple[Region, Region | None]:
    """(internal RAM, external RAM or None): the arena stays inside while everything fits there;
    otherwise it goes to the board's external RAM if that holds it and the rest fits inside."""
    inside = Region(sum(ram_parts.values()), board.ram_bytes, ram_parts)
    ext = board.external_ram
    if inside.fits or ext is None or arena == 0:
        return inside, None
    rest = {part: n for part, n in ram_parts.items() if part != "arena"}
    if sum(rest.values()) > board.ram_bytes or arena > ext.bytes:
        return inside, None
    return Region(sum(rest.values()), board.ram_bytes, rest), Region(arena, ext.bytes, {"arena": arena})


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
    stack = board.stack_bytes
    if runtime == "tflm":
        unsupported = list(a.tflm_missing)
        on_device = measured.tflm_on(board) if not unsupported else None
        if on_device is not None:
            arena = memory.aligned_arena(on_device.arena_min)
            code = memory.measured_tflm_code(on_device.code_bytes, board.core)
            stack = max(stack, on_device.stack_bytes + memory.PROTOCOL_STACK)
            source = (f"measured with {on_device.library} on "
                      f"{'a Cortex-M4 (DSP kernels)' if on_device.dsp else 'a Cortex-M3 (portable kernels)'}")
        else:
            arena = memory.estimate_tflm_arena(measured.tflm, a, board) if measured.tflm else 0
            code = memory.tflm_code_bytes(ops, board.core)
            source = ("estimated (no TFLM library at hand to measure with: --tflm-lib)"
                      if measured.library is None else
                      f"estimated (the board runs {board.tflm.library} with {board.tflm.kernels} kernels)")
        runtime_ram = (on_device.runtime_ram + memory.PROTOCOL_RAM if on_device is not None
                       else memory.tflm_runtime_ram(ops))
        ram_parts = {"arena": arena, "runtime": runtime_ram}
        flash_parts = {"model": a.model_bytes, "code": code}
    elif runtime == "native":
        est = measured.native
        unsupported = list(est.unsupported_ops)
        arena = est.arena_bytes
        ram_parts = {"arena": arena, "runtime": memory.PROTOCOL_RAM}
        flash_parts = {"model": est.weights_bytes,
                       "code": est.flash_bytes - est.weights_bytes + memory.NATIVE_LIBC_CODE
                       + memory.PROTOCOL_CODE}
        source = "planned by the native compiler (exact)"
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    ram_parts |= {"stack": stack, "framework": board.framework_ram_bytes}
    flash_parts |= {"framework": board.framework_flash_bytes}
    # A runtime the board's profile says cannot run there at all: the figures above are what it
    # would need, the verdict is that it is not available (the profile's reason).
    unavailable = board.runtime_unavailable(runtime) or ""
    if unavailable:
        source = f"not available on this board; {source}"
    ram, external = place_arena(board, arena, ram_parts)
    return CheckResult(board, runtime, arena, ram,
                       Region(sum(flash_parts.values()), board.flash_bytes, flash_parts),
                       unsupported, warnings if runtime == "tflm" else [], source, unavailable,
                       external)
