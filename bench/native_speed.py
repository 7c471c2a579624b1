"""Native runtime on the emulated Cortex-M4 (qemu-m4): DSP kernels vs the portable C kernels, in one run.

For each model it builds the same generated sources twice with arm-none-eabi-gcc for qemu-m4
(mps2-an386, -O2): once as they are (the kernels take their DSP path, chosen by __ARM_FEATURE_DSP)
and once with -DTD_NO_DSP (the portable C path every other core runs). Each firmware runs in QEMU
under ``-icount shift=0``, where one instruction takes 1 ns of virtual time, so the device's own
timer gives the instructions an inference executes (SysTick ticks x 40 on mps2-an386). Every
output is compared with the tflite_micro reference: a speed figure only counts if it is bit-exact.

The instruction counts come from a second firmware per variant that runs one inference and
reads SysTick's current-value register around it, interrupts off, as a free 24-bit counter of
virtual time (the protocol's latency comes from a millisecond interrupt that QEMU may deliver
late, which can shift a reading by a whole millisecond = a million instructions).

Printed per model:
  instructions  portable, DSP, portable/DSP; and DSP against TFLM + CMSIS-NN (the pinned Arduino
                library, shared/tflm beside the checkout), counted in the same run the same way
                (issue 10's figures are quoted instead when the library is not there)
  arena         the native arena vs lower bounds: "live" = the largest set of tensors live during
                one op in the model's op order (what any planner needs that keeps each tensor
                whole), "in-place" = the same where an op's output may overlap the input it
                consumes as the kernels permit (compiler.window_gap) - the native arena goes below
                both where chains of ops run row by row (tinydeploy/native/stream.py); "as run" =
                the in-place bound of the order actually run, streams and all, which the planner
                should reach (ar/run); and vs TFLM's arena (tinydeploy.memory.tflm_arena: the
                recording allocator's plan on a 32-bit MCU, within 1% of arena_used_bytes)
  code          machine code of the native runtime in the DSP firmware (generated model.c and
                the kernels: .text of their functions in the linked ELF, no weights or tables)

    python3 bench/native_speed.py                 # IC, AD, VWW (examples/mlperf_tiny)
    python3 bench/native_speed.py --samples 3 extra.tflite ...
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinydeploy import baremetal, memory, tflite  # noqa: E402
from tinydeploy.analyze import analyze  # noqa: E402
from tinydeploy.boards import load_board  # noqa: E402
from tinydeploy.build import build, prepare  # noqa: E402
from tinydeploy.errors import DoesNotFitError  # noqa: E402
from tinydeploy.link import DeviceLink  # noqa: E402
from tinydeploy.native.compiler import build_program  # noqa: E402
from tinydeploy.runners import QemuRunner  # noqa: E402
from tinydeploy.validate import validate  # noqa: E402

MLPERF = ROOT / "examples" / "mlperf_tiny"
MODELS = {"ic": MLPERF / "pretrainedResnet_quant.tflite", "ad": MLPERF / "ad01_int8.tflite",
          "vww": MLPERF / "vww_96_int8.tflite"}
# Issue 10's table: TFLM + CMSIS-NN (the pinned Arduino library) on qemu-m4, instructions. Quoted
# until bench/runtimes.py measures it in the same run as the native runtime.
CMSIS_NN_INSTRUCTIONS = {"ic": 43.4e6, "ad": 0.85e6, "vww": 31.0e6}
SHARED_TFLM = ROOT.parent / "shared" / "tflm" / "arduino-07d1cca"
OUT = ROOT / "bench" / "out" / "native_speed"
BOARD = "qemu-m4"
VARIANTS = {"portable": ["TD_NO_DSP"], "dsp": []}


@dataclass
class Run:
    instructions: int
    exact: bool


COUNT_MAIN = r"""
/* One inference between two readings of SysTick's current value (interrupts off), printed
 * through semihosting: bench/native_speed.py. */
#include <stdint.h>

#include "td_board.h"
#include "td_runtime.h" /* the runtime contract: the native model.c and TFLM's adapter alike */

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

int main(void)
{
    uint32_t seed = 12345u, start, end, ticks;
    char text[24];
    int i, n;
    size_t k;
    if (td_model_init() != 0) {
        td_semihost_exit(1);
    }
    for (i = 0; i < td_model_num_inputs(); ++i) {
        int8_t *in = td_model_input(i);
        for (k = 0; k < td_model_input_size(i); ++k) {
            seed = seed * 1103515245u + 12345u;
            in[k] = (int8_t)(seed >> 16);
        }
    }
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enabled, processor clock, no interrupt */
    start = SYST_CVR;
    if (td_model_invoke() != 0) {
        td_semihost_exit(2);
    }
    end = SYST_CVR;
    ticks = (start - end) & 0xFFFFFFu;
    n = (int)sizeof text - 1;
    text[n] = 0;
    text[--n] = '\n';
    do {
        text[--n] = (char)('0' + ticks % 10u);
        ticks /= 10u;
    } while (ticks != 0u);
    td_semihost_puts(text + n);
    td_semihost_exit(0);
}
"""
SYSTICK_TICKS_MAX = 1 << 24


def _run_counter(board, elf: Path) -> int:
    hz = baremetal.SYSTICK_HZ[board.qemu.machine]
    run = subprocess.run(["qemu-system-arm", "-M", board.qemu.machine, "-nographic", "-monitor",
                          "none", "-icount", "shift=0", "-semihosting-config",
                          "enable=on,target=native", "-kernel", str(elf)],
                         capture_output=True, text=True, timeout=600)
    words = (run.stdout + run.stderr).split()  # QEMU writes semihosting output to stderr
    ticks = int(words[-1]) if run.returncode == 0 and words and words[-1].isdigit() else -1
    if not 0 <= ticks < SYSTICK_TICKS_MAX:
        raise RuntimeError(f"counting firmware: status {run.returncode}, output {words[-3:]}")
    return int(ticks * 1e9 / hz)


def _count_main(work: Path) -> str:
    work.mkdir(parents=True, exist_ok=True)
    (work / "count_main.c").write_text(COUNT_MAIN)
    return str(work / "count_main.c")


def count_instructions(board, sources: list[Path], defines: list[str], work: Path) -> int:
    """Instructions of one native inference: the project's sources linked with the counting
    main instead of the protocol (tinydeploy.baremetal), run once in QEMU."""
    fw = baremetal.build_firmware(board, sources, work, defines=defines, main=_count_main(work),
                                  protocol=False)
    return _run_counter(board, fw.elf)


def count_tflm_instructions(board, model: Path, library, work: Path) -> int:
    """The same count for TensorFlow Lite Micro with the library's kernels (the pinned Arduino
    library: CMSIS-NN on a Cortex-M4), built as tinydeploy builds a tflm firmware."""
    from tinydeploy.device import open_project
    from tinydeploy.tflm_firmware import build_tflm_firmware

    build(prepare(model, tflm_library=library), board, runtime="tflm", out_dir=work / "project",
          force=True)
    project = open_project(work / "project")
    src = work / "project" / "src"
    fw = build_tflm_firmware(board, src, work / "build", library,
                             analyze(project.model_bytes).distinct_ops,
                             main=_count_main(work), protocol=False)
    return _run_counter(board, fw.elf)


def random_samples(model_bytes: bytes, n: int, seed: int = 0) -> np.ndarray:
    spec = analyze(model_bytes).inputs[0]
    rng = np.random.default_rng(seed)
    shape = (n, *spec.shape[1:]) if spec.shape and spec.shape[0] == 1 else (n, *spec.shape)
    if spec.dtype == "int8":
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def run_on_qemu(board, elf: Path, model_bytes: bytes, samples: np.ndarray) -> Run:
    """Validate the firmware on the samples; instructions per inference (the device's median)."""
    with QemuRunner.from_board(board).run(elf) as device:
        with DeviceLink(device.port, open_timeout=device.open_timeout) as link:
            link.hello(expected_hash=hashlib.sha256(model_bytes).digest())
            report = validate(link, model_bytes, samples)
    ns_per_tick = 1e9 / baremetal.SYSTICK_HZ[board.qemu.machine]
    if report.cycles:
        instructions = int(report.cycles["median"] * ns_per_tick)
    else:
        instructions = report.latency_us["median"] * 1000
    return Run(instructions, report.exact_match == 1.0)


def _defined_functions(objects: list[Path]) -> set[str]:
    out = subprocess.run(["arm-none-eabi-nm", "--defined-only", *map(str, objects)],
                         capture_output=True, text=True, check=True).stdout
    return {f[2] for f in (line.split() for line in out.splitlines())
            if len(f) == 3 and f[1] in "tT"}


STUB_MAIN = "int td_model_invoke(void);\nint main(void) { return td_model_invoke(); }\n"


def code_bytes(board, sources: list[Path], work: Path) -> int:
    """.text bytes of the functions the native sources define, linked (unused ones dropped) with
    the board's compiler flags behind a stub main that runs the model."""
    objs = work / "objs"
    objs.mkdir(parents=True, exist_ok=True)
    (objs / "stub_main.c").write_text(STUB_MAIN)
    flags = [*board.qemu.cpu_flags, "-O2", "-ffunction-sections", "-fdata-sections"]
    subprocess.run(["arm-none-eabi-gcc", *flags, "-c", *map(str, sources)], cwd=objs, check=True)
    objects = [objs / f"{s.stem}.o" for s in sources]
    elf = objs / "code.elf"
    subprocess.run(["arm-none-eabi-gcc", *flags, "--specs=nosys.specs", "-Wl,--gc-sections",
                    "-o", str(elf), str(objs / "stub_main.c"), *map(str, objects)], check=True)
    names = _defined_functions(objects)
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    total = 0
    for fields in (line.split() for line in out.splitlines()):
        if len(fields) == 4 and fields[2] in "tT" and fields[3] in names:
            total += int(fields[1], 16)
    return total


def arena_figures(model_bytes: bytes) -> dict:
    program = build_program(tflite.parse(model_bytes))
    tflm = memory.tflm_arena(model_bytes, analyze(model_bytes)).total
    return {"arena": program.arena.size, "live": program.live_bound,
            "in_place": program.in_place_bound, "as_run": program.arena.in_place_bound,
            "tflm": tflm}


def bench_model(name: str, path: Path, samples: int, library=None) -> dict:
    board = load_board(BOARD)
    work = OUT / name
    build(prepare(path), board, out_dir=work / "project", force=True)
    sources = sorted((work / "project" / "src").glob("*.c"))
    model_bytes = (work / "project" / "model.tflite").read_bytes()
    runtime = [s for s in sources if s.name == "model.c" or s.name.startswith("td_")]
    row = {"model": name, **arena_figures(model_bytes),
           "code": code_bytes(board, runtime, work / "code")}
    xs = random_samples(model_bytes, samples)
    for variant, defines in VARIANTS.items():
        try:
            fw = baremetal.build_firmware(board, sources, work / variant, defines=defines)
        except DoesNotFitError as err:
            row[variant] = None
            row["problem"] = err.problem
            continue
        run = run_on_qemu(board, fw.elf, model_bytes, xs)
        run.instructions = count_instructions(board, sources, defines, work / f"{variant}-count")
        row[variant] = run
    if library is not None:
        try:
            row["tflm_instructions"] = count_tflm_instructions(
                board, work / "project" / "model.tflite", library, work / "tflm")
        except DoesNotFitError:
            row["tflm_instructions"] = None
    return row


KWS_PATH = OUT / "ds_cnn_kws.tflite"


def ds_cnn_kws() -> Path:
    """MLPerf Tiny's keyword spotter architecture (DS-CNN: a 10x4 conv, four depthwise-separable
    blocks of 64 channels, average pool, 12 classes; 49x10 MFCC input), with seeded random
    weights, batch norms calibrated on random input, converted to full int8. Made once (it needs
    TensorFlow) and kept in bench/out."""
    if KWS_PATH.exists():
        return KWS_PATH
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    L = keras.layers
    x = inputs = keras.Input((49, 10, 1), batch_size=1)
    x = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(64, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    x = L.Flatten()(x)
    outputs = L.Softmax()(L.Dense(12)(x))
    model = keras.Model(inputs, outputs)
    rs = np.random.default_rng(1)
    calib = rs.normal(size=(32, 49, 10, 1)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = 0.0
    model(calib, training=True)

    def representative():
        for i in range(16):
            yield [calib[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    KWS_PATH.parent.mkdir(parents=True, exist_ok=True)
    KWS_PATH.write_bytes(conv.convert())
    return KWS_PATH


def _m(n: float) -> str:
    return f"{n / 1e6:.2f}M"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path, help="extra int8 .tflite models")
    ap.add_argument("--samples", type=int, default=3, help="random inputs per firmware (the median counts)")
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), default=sorted(MODELS),
                    help="which MLPerf Tiny models (default all)")
    ap.add_argument("--kws", action="store_true",
                    help="also a DS-CNN keyword spotter (MLPerf Tiny's KWS architecture)")
    ap.add_argument("--tflm-lib", type=Path, default=SHARED_TFLM,
                    help="TFLM library to count TFLM+CMSIS-NN with, in the same run (default: "
                         "shared/tflm beside the checkout; 'none' to quote issue 10's figures)")
    args = ap.parse_args(argv)
    library = None
    if str(args.tflm_lib) != "none" and args.tflm_lib.is_dir():
        from tinydeploy.tflm_lib import library_at

        library = library_at(args.tflm_lib, "--tflm-lib")
    todo = [(n, MODELS[n]) for n in args.only] + [(p.stem, p) for p in args.models]
    if args.kws:
        todo.append(("ds_cnn_kws", ds_cnn_kws()))
    rows = [bench_model(n, p, args.samples, library) for n, p in todo]
    print(f"{'model':14} {'portable':>9} {'DSP':>8} {'port/DSP':>8} {'CMSIS-NN*':>9} "
          f"{'DSP/CMSIS':>9} | {'arena':>7} {'live':>7} {'in-place':>8} {'as run':>7} "
          f"{'ar/run':>6} {'TFLM':>8} {'ar/TFLM':>7} | {'code':>6} | bit-exact")
    ok = True
    for r in rows:
        port, dsp = r["portable"], r["dsp"]
        cmsis = r.get("tflm_instructions") or (CMSIS_NN_INSTRUCTIONS.get(r["model"])
                                               if library is None else None)
        memory_cols = (f"{r['arena']:>7,} {r['live']:>7,} {r['in_place']:>8,} "
                       f"{r['as_run']:>7,} {r['arena'] / r['as_run']:>6.2f} {r['tflm']:>8,} "
                       f"{r['arena'] / r['tflm']:>7.2f} | {r['code']:>6,}")
        if port is None or dsp is None:
            print(f"{r['model'][:14]:14} {'(' + r['problem'] + ')':>56} | {memory_cols} | -")
            continue
        vs = f"{dsp.instructions / cmsis:>9.2f}" if cmsis else f"{'-':>9}"
        exact = port.exact and dsp.exact
        ok &= exact
        print(f"{r['model'][:14]:14} {_m(port.instructions):>9} {_m(dsp.instructions):>8} "
              f"{port.instructions / dsp.instructions:>8.2f} "
              f"{_m(cmsis) if cmsis else '-':>9} {vs} | {memory_cols} | "
              f"{'yes' if exact else 'NO'}")
    if library is None:
        print("* TFLM+CMSIS-NN instructions as issue 10 measured them (quoted, not from this run)")
    else:
        print(f"* TFLM+CMSIS-NN counted in this run the same way: {library.describe()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
