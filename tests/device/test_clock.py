"""The emulated boards' clock never goes back (it did: QEMU raises a SysTick wrap's interrupt late,
and for a moment the clock read a millisecond behind - 88 times in three million reads on qemu-m4,
which made the device's byte timeout and its latency figures wrong)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tinydeploy import baremetal
from tinydeploy.boards import load_board

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)")]

PROBE = Path(__file__).with_name("clock_probe.c")


@pytest.mark.parametrize("board_id", ["qemu-m4", "qemu-m3"])
def test_micros_and_cycles_never_step_back(board_id, tmp_path):
    board = load_board(board_id)
    firmware = baremetal.build_firmware(board, [], tmp_path, main=str(PROBE), protocol=False,
                                        name="clock")
    run = subprocess.run(["qemu-system-arm", "-M", board.qemu.machine, "-nographic", "-monitor",
                          "none", "-serial", "null", "-icount", "shift=0", "-semihosting-config",
                          "enable=on,target=native", "-kernel", str(firmware.elf)],
                         capture_output=True, text=True, timeout=300)
    counts = dict(re.findall(r"(\w+)=(\d+)", run.stdout + run.stderr))
    assert counts.get("micros_back") == "0" and counts.get("cycles_back") == "0", counts
    assert int(counts["micros_end"]) > 100_000  # it did run for a while: the clock moved
    assert run.returncode == 0
