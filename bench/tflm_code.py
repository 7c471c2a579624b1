"""Code each TFLM kernel adds, measured with the pinned library on a Cortex-M4 (-Os, CMSIS-NN).

For every op it links the arena-measurement firmware (firmware/tflm/td_tflm_measure.cc: the
interpreter, the allocator, the port, newlib and libstdc++ pieces) with an op resolver holding that
op alone, and prints flash bytes (text + data) minus the model. RESHAPE's build is the base (its
kernel is a few hundred bytes); an op's kernel is its build minus the base. These are the figures
behind tinydeploy.memory's TFLM code table, which `check` uses when no library is at hand.

    python bench/tflm_code.py [--tflm-lib DIR] [--ops CONV_2D ADD ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinydeploy import baremetal, tflm_lib  # noqa: E402
from tinydeploy.boards import load_board  # noqa: E402
from tinydeploy.resources import firmware_dir  # noqa: E402
from tinydeploy.tflm_firmware import _MEASURE_LIMITS, _MEASURE_MACHINES, _with_machine  # noqa: E402

OPS = ["RESHAPE", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "SUB",
       "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "LOGISTIC", "TANH", "HARD_SWISH", "RELU",
       "RELU6", "LEAKY_RELU", "PRELU", "QUANTIZE", "DEQUANTIZE", "MEAN", "PAD", "CONCATENATION",
       "STRIDED_SLICE", "TRANSPOSE_CONV", "RESIZE_NEAREST_NEIGHBOR", "SVDF",
       "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MINIMUM", "TRANSPOSE", "SPLIT", "PACK"]


def code_of(op: str, lib, work: Path) -> int:
    from tinydeploy.render import write_op_resolver

    board = load_board("qemu-m4")
    machine, cpu_flags = _MEASURE_MACHINES[True]
    board = _with_machine(board, machine, cpu_flags)
    src = work / op
    src.mkdir()
    write_op_resolver(src, op, [op])
    (src / "model_data.h").write_text("extern const unsigned char td_model[];\n#define TD_MODEL_DATA td_model\n")
    (src / "model_data.cc").write_text('#include "model_data.h"\nalignas(16) const unsigned char td_model[16] = {0};\n')
    (src / "model_settings.h").write_text("#define TD_ARENA_BYTES 1024\n")
    compiled = tflm_lib.compile_library(lib, tflm_lib.arm_target(board.core, cpu_flags))
    fw = firmware_dir()
    cxx = baremetal.CxxPart((src / "model_data.cc", fw / "tflm" / "td_tflm_measure.cc",
                             fw / "baremetal" / baremetal.TFLM_PORT),
                            compiled.target.cxx_flags, (lib.src, fw / "tflm"), (compiled.archive,))
    elf = baremetal.build_firmware(board, [], work / f"{op}-build", [src], cxx=cxx,
                                   main=str(fw / "baremetal" / "measure_main.c"), protocol=False,
                                   limits=_MEASURE_LIMITS, name="code")
    return elf.flash_bytes - 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflm-lib")
    parser.add_argument("--ops", nargs="+", default=OPS)
    args = parser.parse_args()
    beside = REPO.parent / "shared" / "tflm" / "arduino-07d1cca"
    lib = (tflm_lib.library_at(args.tflm_lib, "--tflm-lib") if args.tflm_lib
           else tflm_lib.find_library(None) or tflm_lib.library_at(beside, "shared/"))
    print(f"{lib.describe()}, Cortex-M4F -Os\n")
    with tempfile.TemporaryDirectory() as tmp:
        base = code_of("RESHAPE", lib, Path(tmp))
        print(f"{'op':<30} {'firmware':>9} {'kernel':>8}")
        for op in args.ops:
            total = base if op == "RESHAPE" else code_of(op, lib, Path(tmp))
            print(f"{op:<30} {total:>9,} {total - base:>8,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
