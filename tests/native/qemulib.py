"""The native runtime on the emulated boards: a model's firmware built for qemu-m4 (the kernels'
DSP path) or qemu-m3 (no DSP: the portable path), run in QEMU and driven over the serial protocol.

``Firmware`` builds through the product's own stages (``tinydeploy.build`` renders the project,
``tinydeploy.baremetal`` compiles and links it); ``Firmware.run`` boots it once and sends any
number of samples, each checked against the model hash in the handshake.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import baremetal
from tinydeploy.boards import load_board
from tinydeploy.build import build, prepare

# The corpus models have dozens of inputs and outputs; their specs must fit one HELLO frame.
DEFINES = ("TD_LINK_MAX_PAYLOAD=4096",)


def have_qemu() -> bool:
    return bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))


needs_qemu = [pytest.mark.qemu, pytest.mark.slow,
              pytest.mark.skipif(not have_qemu(), reason="needs qemu-system-arm and "
                                 "arm-none-eabi-gcc (bash .ci/setup)")]


@dataclass
class Firmware:
    board_id: str
    model_bytes: bytes
    elf: Path
    arena_bytes: int

    def run(self, samples: list[list[np.ndarray]]) -> tuple[list[list[np.ndarray]], list[int]]:
        """Outputs of every sample (a list of input arrays) and the instructions each took
        (under -icount shift=0 one instruction is 1 ns; the device counts SysTick ticks)."""
        from tinydeploy.link import DeviceLink
        from tinydeploy.runners import QemuRunner

        board = load_board(self.board_id)
        ns_per_tick = 1e9 / baremetal.SYSTICK_HZ[board.qemu.machine]
        outputs, instructions = [], []
        with QemuRunner.from_board(board).run(self.elf) as device:
            with DeviceLink(device.port, open_timeout=device.open_timeout) as link:
                info = link.hello(expected_hash=hashlib.sha256(self.model_bytes).digest())
                assert info.runtime == "native" and info.arena_bytes == self.arena_bytes
                for xs in samples:
                    outs, timing = link.run(xs)
                    outputs.append(outs)
                    instructions.append(int(timing.cycles * ns_per_tick))
        return outputs, instructions


def build_firmware(model_bytes: bytes, board_id: str, work: Path,
                   defines: tuple[str, ...] = ()) -> Firmware:
    """Render the native project for the board and link its firmware (raises if it does not
    fit the board)."""
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.tflite"
    model.write_bytes(model_bytes)
    board = load_board(board_id)
    result = build(prepare(model), board, runtime="native", out_dir=work / "project", force=True)
    assert result.out_dir is not None, result.check.verdict()
    sources = sorted((work / "project" / "src").glob("*.c"))
    fw = baremetal.build_firmware(board, sources, work / "build", defines=(*DEFINES, *defines))
    return Firmware(board_id, model_bytes, fw.elf, _arena(work / "project" / "src" / "model.h"))


def _arena(header: Path) -> int:
    for line in header.read_text().splitlines():
        if line.startswith("#define TD_MODEL_ARENA_SIZE "):
            return int(line.split()[-1].rstrip("u"))
    raise AssertionError(f"no TD_MODEL_ARENA_SIZE in {header}")
