"""TFLM + CMSIS-NN (the pinned Arduino library) against the native runtime, on the emulated
Cortex-M4, same models, same build of the tool, one run.

For each model and runtime it builds the firmware for qemu-m4, runs a few random samples in QEMU
under ``-icount shift=0`` (virtual time advances 1 ns per executed instruction, so the device's
median latency in µs × 1000 is the instructions of one inference, exact and repeatable) and prints:

  instr   instructions per inference (device µs × 1000)
  arena   the arena the device reports (TFLM: arena_used_bytes(); native: its static arena)
  code    flash of the linked firmware minus the model's data (TFLM: the .tflite array; native:
          every constant model.c holds: weights, per-channel quantization, op parameters), i.e.
          runtime + kernels + protocol + startup
  native/TFLM ratios of the three, the issue's targets beside them; and the part of the code that
          both runtimes share (protocol, startup, UART, clock), so that a runtime's own code is
          code minus that.

    python bench/runtimes.py [--tflm-lib DIR] [--models digits ic ad vww] [--samples 3]

The TFLM library comes from --tflm-lib, TINYDEPLOY_TFLM_LIB or shared/tflm beside the checkout.
Every figure is measured in this run; nothing is carried over from elsewhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinydeploy.build import build, prepare  # noqa: E402
from tinydeploy.device import flash, open_project, running  # noqa: E402
from tinydeploy.tflm_lib import find_library, library_at  # noqa: E402
from tinydeploy.validate import reference_for, validate  # noqa: E402

MODELS = {
    "digits": (REPO / "examples" / "digits" / "digits.keras", REPO / "examples" / "digits" / "calib.npz"),
    "ic": (REPO / "examples" / "mlperf_tiny" / "pretrainedResnet_quant.tflite", None),
    "ad": (REPO / "examples" / "mlperf_tiny" / "ad01_int8.tflite", None),
    "vww": (REPO / "examples" / "mlperf_tiny" / "vww_96_int8.tflite", None),
}
#: Issue 10's targets for the native runtime against TFLM + CMSIS-NN.
TARGETS = {"instr": 0.8, "arena": 0.5}
NATIVE_CODE_TARGET = 8 * 1024


def measure(name: str, runtime: str, prepared, library, samples: int, work: Path) -> dict:
    result = build(prepared, "qemu-m4", runtime=runtime, out_dir=work / f"{name}-{runtime}")
    if result.out_dir is None:
        return {"error": result.check.verdict()}
    project = open_project(result.out_dir, str(library.root) if library else None)
    flash(project)
    firmware_flash = _flash_bytes(project)
    model_data = len(prepared.model_bytes) if runtime == "tflm" else _native_model_data(project)
    spec = prepared.analysis.inputs[0]
    x = np.random.default_rng(0).integers(-128, 128, (samples, *spec.shape[1:]), dtype=np.int8)
    reference = reference_for(runtime, prepared.model_bytes, library)
    with running(project) as link:
        report = validate(link, prepared.model_bytes, x, reference=reference)
    return {"instr": report.latency_us["median"] * 1000, "arena": report.arena_bytes,
            "code": firmware_flash - model_data, "exact": report.exact_match}


def _common_code(board) -> int:
    """text + rodata of the firmware pieces both runtimes link (protocol and board support)."""
    import subprocess

    from tinydeploy.baremetal import firmware_sources
    from tinydeploy.resources import firmware_dir

    fw = firmware_dir()
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for source in firmware_sources(board):
            obj = Path(tmp) / f"{source.stem}.o"
            subprocess.run(["arm-none-eabi-gcc", *board.qemu.cpu_flags, "-O2", "-DTD_SYSTICK_HZ=25000000u",
                            f"-I{fw}", f"-I{fw / 'protocol'}", f"-I{fw / 'baremetal'}", "-c",
                            str(source), "-o", str(obj)], check=True)
            sizes = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True,
                                   text=True, check=True).stdout.splitlines()
            total += sum(int(line.split()[1]) for line in sizes
                         if line.startswith((".text", ".rodata")) and len(line.split()) >= 2)
    return total


def _native_model_data(project) -> int:
    """Bytes of constant data in the native model.c (its .rodata and .data sections)."""
    import subprocess

    src = project.path / "src"
    obj = project.path / "build" / "model_data_only.o"
    subprocess.run(["arm-none-eabi-gcc", *project.board.qemu.cpu_flags, "-O2", "-fdata-sections",
                    "-ffunction-sections", f"-I{src}", "-c", str(src / "model.c"), "-o", str(obj)],
                   check=True)
    sizes = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    return sum(int(line.split()[1]) for line in sizes
               if line.startswith((".rodata", ".data")) and len(line.split()) >= 2)


def _flash_bytes(project) -> int:
    from tinydeploy.baremetal import _image_sizes

    return _image_sizes(project.elf)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflm-lib", help="the Arduino_TensorFlowLite library folder")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    beside = REPO.parent / "shared" / "tflm" / "arduino-07d1cca"
    library = (library_at(args.tflm_lib, "--tflm-lib") if args.tflm_lib else find_library(None)
               or (library_at(beside, "shared/") if beside.is_dir() else None))
    if library is None:
        print("no TFLM library: pass --tflm-lib DIR (or set TINYDEPLOY_TFLM_LIB)", file=sys.stderr)
        return 2
    print(f"TFLM: {library.describe()}; board qemu-m4 (Cortex-M4F, -icount shift=0)\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinydeploy-bench-") as tmp:
        for name in args.models:
            model, calib = MODELS[name]
            prepared = prepare(model, calib=str(calib) if calib else None, tflm_library=library)
            figures = {rt: measure(name, rt, prepared, library, args.samples, Path(tmp))
                       for rt in ("tflm", "native")}
            rows.append((name, figures))
            print(f"measured {name}", file=sys.stderr)
    header = (f"{'model':<7} {'TFLM instr':>12} {'native instr':>13} {'ratio':>6} | "
              f"{'TFLM arena':>10} {'native arena':>12} {'ratio':>6} | "
              f"{'TFLM code':>9} {'native code':>11} {'ratio':>6} | exact")
    print(header)
    print("-" * len(header))
    for name, f in rows:
        t, n = f["tflm"], f["native"]
        if "error" in t or "error" in n:
            print(f"{name:<7} {t.get('error') or n.get('error')}")
            continue
        print(f"{name:<7} {t['instr']:>12,} {n['instr']:>13,} {n['instr'] / t['instr']:>6.2f} | "
              f"{t['arena']:>10,} {n['arena']:>12,} {n['arena'] / t['arena']:>6.2f} | "
              f"{t['code']:>9,} {n['code']:>11,} {n['code'] / t['code']:>6.2f} | "
              f"{t['exact']:.0%} / {n['exact']:.0%}")
    from tinydeploy.boards import load_board

    print(f"\ncode both runtimes share (protocol, startup, UART, clock): about "
          f"{_common_code(load_board('qemu-m4')):,} B of each code figure")
    print(f"targets (issue 10): native instr <= {TARGETS['instr']} x TFLM+CMSIS-NN, native arena "
          f"<= {TARGETS['arena']} x TFLM arena_used_bytes, native code <= {NATIVE_CODE_TARGET:,} B")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
