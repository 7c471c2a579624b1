"""The native kernels on the emulated boards, bit for bit: the DSP path on qemu-m4 (Cortex-M4F,
__ARM_FEATURE_DSP) and the portable C path on qemu-m3 (Cortex-M3, no DSP), against tflite_micro.

Every corpus group and the MLPerf Tiny models are built into real firmware (tinydeploy.build +
arm-none-eabi-gcc, the boards' own flags) and driven over the serial protocol in QEMU. The host
tests (test_corpus.py, test_mlperf.py) cover the portable path too; these prove what runs on the
cores. Firmware builds are shared per session (``firmware`` fixture).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import native_corpus
import nativelib
import qemulib
from tinydeploy.errors import DoesNotFitError
from tinydeploy.native import compiler
from test_corpus import IN_PLACE_GROUPS, _tightest_overlap_plan

pytestmark = qemulib.needs_qemu

BOARDS = ["qemu-m4", "qemu-m3"]           # DSP path, portable path
GROUPS = [g.name for g in native_corpus.groups()]
# The portable path is the host's too (test_corpus.py runs every group there); on the M3 a group
# per kernel family shows the same C compiled for a core without DSP agrees.
M3_GROUPS = ["conv_a", "depthwise_a", "dense", "pool", "elementwise", "misc"]
RUNS = 2
MLPERF = ["pretrainedResnet_quant.tflite", "ad01_int8.tflite", "vww_96_int8.tflite"]


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    """firmware(key, model_bytes, board) -> qemulib.Firmware, built once per key and board."""
    built: dict[tuple[str, str], qemulib.Firmware] = {}

    def get(key: str, model_bytes: bytes, board: str) -> qemulib.Firmware:
        if (key, board) not in built:
            work = tmp_path_factory.mktemp(f"{key}-{board}")
            built[(key, board)] = qemulib.build_firmware(model_bytes, board, work)
        return built[(key, board)]

    return get


def mismatches(fw: qemulib.Firmware, runs: int, seed: int) -> list[str]:
    """Run random inputs on the device and on tflite_micro; describe every differing output."""
    ref = nativelib.Reference(fw.model_bytes)
    rng = np.random.default_rng(seed)
    samples = [ref.random_inputs(rng) for _ in range(runs)]
    device, _ = fw.run(samples)
    found = []
    for run, (xs, got) in enumerate(zip(samples, device)):
        for i, (e, g) in enumerate(zip(ref.run(xs), got)):
            g = np.asarray(g).reshape(e.shape)
            if not np.array_equal(e, g):
                found.append(f"run {run} output {i}: {np.sum(e != g)}/{e.size} differ, "
                             f"max |diff| {np.abs(e.astype(float) - g.astype(float)).max()}")
    return found


@pytest.mark.parametrize("group, board", [(g, "qemu-m4") for g in GROUPS] +
                         [(g, "qemu-m3") for g in M3_GROUPS])
def test_corpus_group_is_bit_exact_on_board(group, board, corpus, firmware):
    found = mismatches(firmware(group, corpus[group], board), RUNS, seed=11)
    assert not found, f"{group} on {board}:\n" + "\n".join(found[:20])


# The kernels with a DSP path of their own (the others run the same C as the host).
DSP_IN_PLACE_GROUPS = [g for g in IN_PLACE_GROUPS if g.startswith(("conv", "depthwise", "pool"))]


@pytest.mark.parametrize("group", DSP_IN_PLACE_GROUPS)
def test_dsp_kernels_are_bit_exact_at_the_tightest_overlap(group, corpus, tmp_path, monkeypatch):
    """Outputs written over their dying inputs at exactly compiler.window_gap bytes: the DSP
    kernels' access order (two pixels at a time, four channels per word) must still be safe."""
    monkeypatch.setattr(compiler, "plan_arena", _tightest_overlap_plan)
    fw = qemulib.build_firmware(corpus[group], "qemu-m4", tmp_path)
    found = mismatches(fw, 2, seed=12)
    assert not found, f"{group} in place on qemu-m4:\n" + "\n".join(found[:20])


#: ad01's 270 KB of weights exceed qemu-m3's 256 KB of flash (the test below proves it).
TOO_BIG = {("ad01_int8.tflite", "qemu-m3")}


@pytest.mark.parametrize("model, board", [(m, b) for m in MLPERF for b in BOARDS
                                          if (m, b) not in TOO_BIG])
def test_mlperf_model_is_bit_exact_on_board(model, board, firmware):
    model_bytes = nativelib.mlperf_path(model).read_bytes()
    fw = firmware(model, model_bytes, board)
    # VWW's 27 KB input crawls through the emulated UART: one sample there (the host test runs
    # a hundred on the same kernels)
    found = mismatches(fw, 1 if model.startswith("vww") else RUNS, seed=13)
    assert not found, f"{model} on {board}:\n" + "\n".join(found)


@pytest.mark.parametrize("model, board", sorted(TOO_BIG))
def test_a_model_too_big_for_the_board_is_refused_by_the_link(model, board, tmp_path):
    with pytest.raises(DoesNotFitError, match=f"does not fit {board}: FLASH"):
        qemulib.build_firmware(nativelib.mlperf_path(model).read_bytes(), board, tmp_path)


def _disassembly(source: str, flags: list[str], tmp_path) -> str:
    obj = tmp_path / "kernel.o"
    subprocess.run(["arm-none-eabi-gcc", *flags, "-O2", "-c", str(nativelib.KERNEL_DIR / source),
                    "-o", str(obj)], check=True)
    return subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                          text=True, check=True).stdout


M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
M3 = ["-mcpu=cortex-m3", "-mthumb"]


@pytest.mark.parametrize("source, instruction", [("td_gemm.c", "smlad"),
                                                 ("td_depthwise.c", "smlabb")])
def test_the_dsp_path_is_what_the_m4_build_compiles(source, instruction, tmp_path):
    """The boards' flags pick the path: DSP multiply-accumulates on the M4, none on the M3 or
    with -DTD_NO_DSP (the portable build the bench compares against)."""
    assert instruction in _disassembly(source, M4, tmp_path)
    assert "sxtb16" not in _disassembly(source, M3, tmp_path)
    assert instruction not in _disassembly(source, [*M4, "-DTD_NO_DSP"], tmp_path)
