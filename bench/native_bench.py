"""Native runtime vs TFLM on the MLPerf Tiny int8 models (examples/mlperf_tiny), measured in one run.

For each model it prints:
  RAM    native arena (+ scratch) vs TFLM's arena, total and non-persistent part (from
         tflite_micro's print_allocations on this host)
  flash  native model + kernel objects (arm-none-eabi-size, text + data, cortex-m4 -Os) vs the
         .tflite size (TFLM's own ~40 KB of code comes on top of the .tflite for TFLM)
  time   median host invoke time of the native build (gcc -O2, ctypes) vs the tflite_micro
         interpreter
and the issue's targets: native RAM <= TFLM non-persistent, native flash <= .tflite + 30 KB.

    PYTHONPATH=. python bench/native_bench.py [--runs 20] [--models DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tinydeploy import native

MODELS = ["pretrainedResnet_quant.tflite", "ad01_int8.tflite", "vww_96_int8.tflite"]
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "examples" / "mlperf_tiny"
OUT = Path(__file__).resolve().parent / "out" / "native"
ARM_FLAGS = ["-std=c99", "-mcpu=cortex-m4", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror"]
FLASH_SLACK = 30 * 1024

_TFLM_ALLOCATIONS = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
ip = runtime.Interpreter.from_file(sys.argv[1])
d = ip.get_input_details(0)
ip.set_input(np.zeros(d["shape"], d["dtype"]), 0)
ip.invoke()
ip.print_allocations()
"""


def tflm_arena(path: Path) -> tuple[int, int]:
    """(total, non-persistent) arena bytes as tflite_micro records them (printed from C++ to the
    log, so read from a child process's output)."""
    proc = subprocess.run([sys.executable, "-c", _TFLM_ALLOCATIONS, str(path)],
                          capture_output=True, text=True, check=True)
    out = proc.stdout + proc.stderr
    total = int(re.search(r"allocation total (\d+) bytes", out).group(1))
    head = int(re.search(r"allocation head (\d+) bytes", out).group(1))
    return total, head


def native_flash(src: Path, work: Path) -> int:
    """text + data bytes of the compiled model and its kernels for a Cortex-M4."""
    objs = work / "arm"
    objs.mkdir(parents=True, exist_ok=True)
    sources = sorted(src.glob("*.c"))
    subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, "-c", *map(str, sources)], cwd=objs,
                   check=True)
    out = subprocess.run(["arm-none-eabi-size", *[f"{s.stem}.o" for s in sources]], cwd=objs,
                         capture_output=True, text=True, check=True).stdout
    total = 0
    for line in out.splitlines()[1:]:
        text, data = line.split()[:2]
        total += int(text) + int(data)
    return total


def host_library(src: Path, work: Path) -> ctypes.CDLL:
    lib = work / "model.so"
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-o", str(lib),
                    *map(str, sorted(src.glob("*.c")))], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.td_model_input.restype = ctypes.c_void_p
    dll.td_model_input_size.restype = ctypes.c_size_t
    assert dll.td_model_init() == 0
    return dll


def time_invokes(model_bytes: bytes, dll: ctypes.CDLL, runs: int) -> tuple[float, float]:
    """Median seconds per invoke: (native, tflite_micro), on the same random int8 inputs,
    interleaved so that load from other processes hits both alike."""
    from tflite_micro.python.tflite_micro import runtime
    ip = runtime.Interpreter.from_bytes(model_bytes)
    d = ip.get_input_details(0)
    rng = np.random.default_rng(0)
    xs = [rng.integers(-128, 128, size=d["shape"], dtype=np.int8) for _ in range(runs)]
    dst, n = dll.td_model_input(0), dll.td_model_input_size(0)
    t_native, t_tflm = [], []
    for x in xs:
        ip.set_input(x, 0)
        t0 = time.perf_counter()
        ip.invoke()
        t_tflm.append(time.perf_counter() - t0)
        ctypes.memmove(dst, x.tobytes(), n)
        t0 = time.perf_counter()
        dll.td_model_invoke()
        t_native.append(time.perf_counter() - t0)
    return float(np.median(t_native)), float(np.median(t_tflm))


def bench_model(path: Path, runs: int) -> dict:
    model_bytes = path.read_bytes()
    work = OUT / path.stem
    src = work / "src"
    result = native.compile_model(model_bytes, src)
    total, head = tflm_arena(path)
    t_native, t_tflm = time_invokes(model_bytes, host_library(src, work), runs)
    ram = result.arena_bytes + result.scratch_bytes
    flash = native_flash(src, work)
    return {"model": path.stem, "native_ram": ram, "tflm_total": total, "tflm_head": head,
            "native_flash": flash, "tflite": len(model_bytes),
            "t_native": t_native, "t_tflm": t_tflm,
            "ram_ok": ram <= head, "flash_ok": flash <= len(model_bytes) + FLASH_SLACK}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="invokes timed per model")
    ap.add_argument("--models", type=Path,
                    default=Path(os.environ.get("TD_MLPERF_DIR", DEFAULT_DIR)))
    args = ap.parse_args(argv)
    rows = [bench_model(args.models / m, args.runs) for m in MODELS]
    print(f"{'model':24} {'native RAM':>10} {'TFLM tot':>9} {'TFLM np':>8} {'RAM/np':>7} "
          f"{'RAM/tot':>7} | {'nat flash':>9} {'.tflite':>8} {'fl/tfl':>7} | "
          f"{'nat ms':>7} {'TFLM ms':>8} {'speedup':>7} | targets")
    for r in rows:
        print(f"{r['model']:24} {r['native_ram']:>10,} {r['tflm_total']:>9,} {r['tflm_head']:>8,} "
              f"{r['native_ram'] / r['tflm_head']:>7.2f} {r['native_ram'] / r['tflm_total']:>7.2f} | "
              f"{r['native_flash']:>9,} {r['tflite']:>8,} {r['native_flash'] / r['tflite']:>7.2f} | "
              f"{r['t_native'] * 1e3:>7.2f} {r['t_tflm'] * 1e3:>8.2f} "
              f"{r['t_tflm'] / r['t_native']:>6.2f}x | "
              f"RAM {'ok' if r['ram_ok'] else 'MISSED'}, flash {'ok' if r['flash_ok'] else 'MISSED'}")
    return 0 if all(r["ram_ok"] and r["flash_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
