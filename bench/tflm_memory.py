"""How close `check`'s TFLM figures come to what the pinned library really needs, per model.

For every model: the arena the pinned TFLM library (CMSIS-NN) needs to initialise, measured on an
emulated Cortex-M4 (DSP kernels) and Cortex-M3 (portable kernels); what `check` estimates without
the library (from the tflite_micro wheel's recording allocator); the code the library takes on the
M4 against the estimate. Ratios estimate / measured: an estimate must never be below 1.00.

    python bench/tflm_memory.py [--tflm-lib DIR] [--models ...]

Models: the examples (digits, sine), the MLPerf Tiny three, and bench/zoo.py's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import zoo  # noqa: E402
from tinydeploy import memory, tflm_firmware  # noqa: E402
from tinydeploy.analyze import analyze  # noqa: E402
from tinydeploy.boards import load_board  # noqa: E402
from tinydeploy.tflm_lib import find_library, library_at  # noqa: E402

MLPERF = REPO / "examples" / "mlperf_tiny"
FILES = {"ic": MLPERF / "pretrainedResnet_quant.tflite", "ad": MLPERF / "ad01_int8.tflite",
         "vww": MLPERF / "vww_96_int8.tflite"}
KERAS = {"digits": REPO / "examples" / "digits", "sine": REPO / "examples" / "sine"}


def model_bytes(name: str) -> bytes:
    if name in FILES:
        return FILES[name].read_bytes()
    if name in KERAS:
        from tinydeploy.build import prepare

        folder = KERAS[name]
        return prepare(folder / f"{name}.keras", calib=str(folder / "calib.npz"), isolate=False).model_bytes
    return zoo.model_bytes(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflm-lib")
    parser.add_argument("--models", nargs="+",
                        default=["digits", "sine", "ic", "ad", "vww", *zoo.MODELS])
    args = parser.parse_args()
    beside = REPO.parent / "shared" / "tflm" / "arduino-07d1cca"
    lib = (library_at(args.tflm_lib, "--tflm-lib") if args.tflm_lib else find_library(None)
           or (library_at(beside, "shared/") if beside.is_dir() else None))
    if lib is None:
        print("no TFLM library: pass --tflm-lib DIR", file=sys.stderr)
        return 2
    board = load_board("nano33ble")
    print(f"{lib.describe()}\n")
    head = (f"{'model':<13} {'M4 min':>8} {'M4 used':>8} {'M3 min':>8} {'estimate':>9} {'est/M4':>7} "
            f"{'est/M3':>7} | {'M4 code':>8} {'code est':>9} {'ratio':>6} | stack")
    print(head)
    print("-" * len(head))
    worst = []
    for name in args.models:
        data = model_bytes(name)
        a = analyze(data)
        m4 = tflm_firmware.measure(data, a.distinct_ops, lib, dsp=True)
        m3 = tflm_firmware.measure(data, a.distinct_ops, lib, dsp=False)
        estimate = memory.estimate_tflm_arena(memory.tflm_arena(data, a), a, board)
        code_est = memory.tflm_code_bytes(a.distinct_ops, board.core) - memory.PROTOCOL_CODE
        worst += [estimate / m4.arena_min, estimate / m3.arena_min]
        print(f"{name:<13} {m4.arena_min:>8,} {m4.arena_used:>8,} {m3.arena_min:>8,} {estimate:>9,} "
              f"{estimate / m4.arena_min:>7.3f} {estimate / m3.arena_min:>7.3f} | {m4.code_bytes:>8,} "
              f"{code_est:>9,} {code_est / m4.code_bytes:>6.2f} | {m4.stack_bytes:,}")
    print(f"\nestimate / measured arena: min {min(worst):.3f}, max {max(worst):.3f} "
          "(must stay >= 1.000; the closer to 1 the better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
