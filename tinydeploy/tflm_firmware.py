"""TFLM firmware for the emulated boards, and what the TFLM library really needs for one model.

``build_tflm_firmware()`` builds an emulated board's TFLM firmware: the rendered project's model
data, the TFLM runtime adapter (``firmware/tflm/td_runtime_tflm.cc``) and the bare-metal port
(``firmware/baremetal/tflm_port.cc``) over the library compiled for the board's core — only the
kernels of the model's ops, with the whole library as the fallback (:func:`link_with_library`) —
linked by tinydeploy.baremetal with the protocol and the board support.

``measure()`` answers, with the library a board runs, the two questions the memory check used to
estimate: the smallest tensor arena with which the model *initialises* (``AllocateTensors()``
succeeds: scratch buffers and the planner's own allocation-time peak included) and the code the
library takes for the model's ops. It builds a small firmware (``firmware/tflm/td_tflm_measure.cc``)
that binary-searches the arena size on the device itself, and runs it in QEMU on a machine with the
same core family and room to spare (mps2-an386 for cores with the DSP extension, whose CMSIS-NN
kernels ask for their own scratch sizes; mps2-an385 for the others). Results are cached on disk,
keyed by model, library, core flags and tinydeploy's measurement code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tinydeploy import baremetal, tflm_lib
from tinydeploy.boards import BoardProfile, load_board
from tinydeploy.errors import BuildError, DeviceError, ModelError
from tinydeploy.resources import firmware_dir

#: Cores whose CMSIS-NN kernels take the DSP (SIMD) path, and so size their scratch buffers for it.
DSP_CORES = ("cortex-m4", "cortex-m4f", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m85")


def core_target(board: BoardProfile) -> tflm_lib.Target:
    """The library target of an emulated board: its core, with its own gcc flags."""
    return tflm_lib.arm_target(board.core, tuple(board.qemu.cpu_flags))


def link_with_library(lib: tflm_lib.TflmLibrary, target: tflm_lib.Target, ops: list[str],
                      link, progress=None):
    """``link(compiled)`` with the library compiled for ``ops`` only; if that link misses a symbol
    (a kernel that calls into another op's file), again with the whole library."""
    compiled = tflm_lib.compile_library(lib, target, progress, ops=ops)
    try:
        return link(compiled)
    except BuildError as exc:
        if compiled.complete or "undefined reference" not in getattr(exc, "stderr", ""):
            raise
        return link(tflm_lib.compile_library(lib, target, progress))


def build_tflm_firmware(board: BoardProfile, project_src: Path, out_dir: Path,
                        lib: tflm_lib.TflmLibrary, ops: list[str], progress=None, *,
                        c_sources=None, **options):
    """An emulated board's TFLM firmware from a rendered project's src/ (tinydeploy.baremetal;
    ``c_sources`` default to src/*.c, ``options`` go to baremetal.build_firmware)."""
    fw = firmware_dir()
    sources = (*sorted(Path(project_src).glob("*.cc")), fw / "tflm" / "td_runtime_tflm.cc",
               fw / "baremetal" / baremetal.TFLM_PORT)
    c_sources = sorted(Path(project_src).glob("*.c")) if c_sources is None else c_sources

    def link(compiled):
        cxx = baremetal.CxxPart(tuple(sources), compiled.target.cxx_flags, (lib.src, fw / "tflm"),
                                (compiled.archive,))
        return baremetal.build_firmware(board, c_sources, out_dir, cxx=cxx, **options)

    return link_with_library(lib, core_target(board), ops, link, progress)


# --------------------------------------------------------------------------- measurement

#: Machines the measurement runs on: same core family as the boards measured, 4 MB of RAM and
#: flash so that a model too big for a board can still be measured (and said to be too big).
_MEASURE_BOARDS = {True: "qemu-m4", False: "qemu-m3"}
_MEASURE_MACHINES = {True: ("mps2-an386", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                           "-mfpu=fpv4-sp-d16")),
                     False: ("mps2-an385", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"))}
_MEASURE_LIMITS = (4 << 20, 4 << 20)
#: Stack reserve of the measurement firmware: far more than TFLM takes, so it can be measured.
_MEASURE_STACK = 64 << 10
#: The largest arena the measurement firmware searches (it must fit the 4 MB of RAM with the rest).
MEASURE_ARENA_MAX = 3 << 20
_RESULT = re.compile(r"td-measure (\w+)=(-?\d+)")
#: Bump when TflmMeasurement changes, so cached measurements are taken again.
_MEASUREMENT_VERSION = b"2"


@dataclass(frozen=True)
class TflmMeasurement:
    """What the TFLM library needs for one model on one core family, measured on the device."""

    arena_min: int          # smallest arena (alignas(16) buffer) with which AllocateTensors succeeds
    arena_used: int         # arena_used_bytes() reported with that arena
    code_bytes: int         # flash of the measurement firmware minus the model: library + port
    stack_bytes: int        # deepest stack of AllocateTensors() and one Invoke()
    runtime_ram: int        # static RAM besides the arena: interpreter, resolver, C runtime
    dsp: bool               # measured with the DSP (SIMD) kernels
    library: str            # "<name> <version>"

    def to_dict(self) -> dict:
        return asdict(self)


def has_dsp(core: str) -> bool:
    return core.lower() in DSP_CORES


def can_measure(board: BoardProfile, lib: tflm_lib.TflmLibrary) -> bool:
    """Can ``lib`` be measured here for ``board``: the board builds this very library with CMSIS-NN
    on an Arm core, and the Arm toolchain and QEMU are installed."""
    import shutil

    from tinydeploy.runners.qemu import QEMU

    return (board.tflm.kernels == "cmsis_nn" and board.tflm.library == lib.name
            and board.core.lower().startswith("cortex-m")
            and all(shutil.which(p) for p in ("arm-none-eabi-g++", QEMU)))


def measure(model_bytes: bytes, ops: list[str], lib: tflm_lib.TflmLibrary, dsp: bool,
            progress=None) -> TflmMeasurement:
    """The arena and code the library needs for the model (see the module doc); cached on disk."""
    measure_source = firmware_dir() / "tflm" / "td_tflm_measure.cc"
    key = hashlib.sha256(b"\0".join([
        _MEASUREMENT_VERSION, model_bytes, lib.fingerprint().encode(), str(dsp).encode(),
        measure_source.read_bytes(),
        (firmware_dir() / "baremetal" / baremetal.TFLM_PORT).read_bytes(),
        (firmware_dir() / "tflm" / "td_runtime_tflm.cc").read_bytes()])).hexdigest()
    cache = tflm_lib.cache_dir() / "tflm-measure" / f"{key[:32]}.json"
    if cache.is_file():
        try:
            return TflmMeasurement(**json.loads(cache.read_text()))
        except (TypeError, ValueError):
            pass  # an older or damaged entry: measure again
    if progress:
        progress(f"measuring what {lib.name} needs for this model on an emulated "
                 f"{'Cortex-M4 (DSP kernels)' if dsp else 'Cortex-M3 (portable kernels)'} "
                 "(once per model; cached)")
    result = _measure_on_device(model_bytes, ops, lib, dsp, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict()))
    tmp.replace(cache)
    return result


def _measure_on_device(model_bytes: bytes, ops: list[str], lib: tflm_lib.TflmLibrary, dsp: bool,
                       progress) -> TflmMeasurement:
    from tinydeploy.render import c_array_body, write_op_resolver
    from tinydeploy.runners.qemu import QEMU, die_with_parent

    board = load_board(_MEASURE_BOARDS[dsp])
    machine, cpu_flags = _MEASURE_MACHINES[dsp]
    board = _with_machine(board, machine, cpu_flags)
    with tempfile.TemporaryDirectory(prefix="tinydeploy-measure-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        write_op_resolver(src, "measured", ops)
        (src / "model_data.h").write_text(
            "#ifndef TD_MODEL_DATA_H\n#define TD_MODEL_DATA_H\n"
            "extern const unsigned char td_measured_model[];\n"
            "extern const unsigned int td_measured_model_len;\n"
            "#define TD_MODEL_DATA td_measured_model\n#define TD_MODEL_DATA_LEN td_measured_model_len\n"
            "#endif\n")
        (src / "model_data.cc").write_text(
            '#include "model_data.h"\nalignas(16) const unsigned char td_measured_model[] = {\n'
            + c_array_body(model_bytes) + f"\n}};\nconst unsigned int td_measured_model_len = {len(model_bytes)};\n")
        (src / "model_settings.h").write_text(f"#define TD_ARENA_BYTES {MEASURE_ARENA_MAX}\n")
        fw = firmware_dir()

        def link(compiled):
            cxx = baremetal.CxxPart((src / "model_data.cc", fw / "tflm" / "td_tflm_measure.cc",
                                     fw / "baremetal" / baremetal.TFLM_PORT),
                                    compiled.target.cxx_flags, (lib.src, fw / "tflm"),
                                    (compiled.archive,))
            return baremetal.build_firmware(board, [], Path(tmp) / "build", [src], cxx=cxx,
                                            main=str(fw / "baremetal" / "measure_main.c"),
                                            protocol=False, limits=_MEASURE_LIMITS, name="measure")

        elf = link_with_library(lib, tflm_lib.arm_target(board.core, cpu_flags), ops, link, progress)
        try:
            run = subprocess.run([QEMU, "-M", machine, "-nographic", "-monitor", "none",
                                  "-serial", "null", "-icount", "shift=0",
                                  "-semihosting-config", "enable=on,target=native",
                                  "-kernel", str(elf.elf)],
                                 capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                                 preexec_fn=die_with_parent(os.getpid()))
        except subprocess.TimeoutExpired:
            raise DeviceError("measuring TFLM's arena in QEMU took over 120 s",
                              "the machine may be overloaded; run again") from None
        console = run.stdout + run.stderr  # QEMU writes the semihosting console to stderr
        values = {k: int(v) for k, v in _RESULT.findall(console)}
        if "arena_min" not in values:
            log = " | ".join(dict.fromkeys(line for line in console.splitlines() if line.strip()))[-300:]
            raise ModelError(f"{lib.name} cannot initialise this model even with a "
                             f"{MEASURE_ARENA_MAX:,} B arena (TFLM said: {log or 'nothing'})",
                             "check 'tinydeploy inspect' for ops the library lacks")
        if values.get("invoke_status", 0) != 0 or "stack_used" not in values:
            raise ModelError(f"{lib.name} initialises this model but its Invoke() fails "
                             f"(status {values.get('invoke_status')})",
                             "check 'tinydeploy inspect' for op versions the library lacks")
        code = elf.flash_bytes - len(model_bytes)
        runtime_ram = elf.ram_bytes - MEASURE_ARENA_MAX - _MEASURE_STACK
        return TflmMeasurement(values["arena_min"], values["arena_used"], code,
                               values["stack_used"], runtime_ram, dsp, f"{lib.name} {lib.version}")


def _with_machine(board: BoardProfile, machine: str, cpu_flags: tuple[str, ...]) -> BoardProfile:
    from dataclasses import replace

    return replace(board, stack_bytes=_MEASURE_STACK,
                   qemu=replace(board.qemu, machine=machine, cpu_flags=cpu_flags, uart="cmsdk"))

