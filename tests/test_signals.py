"""However tinydeploy dies, QEMU dies with it; SIGTERM is handled like Ctrl-C.

Real processes: `python -m tinydeploy deploy` on the emulated board, killed mid-validation.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paths import MLPERF

pytestmark = [
    pytest.mark.qemu, pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                       reason="needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)"),
]


def qemu_processes(marker: str) -> list[int]:
    """Pids of qemu-system-arm processes whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"qemu-system-arm") and any(marker.encode() in a for a in cmdline):
            pids.append(int(entry.name))
    return pids


def start_long_validation(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A deploy of the image classifier with many samples: it is validating for a long while."""
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=np.random.default_rng(0).integers(-128, 128, (400, 32, 32, 3), dtype=np.int8))
    project = tmp_path / "ic"
    proc = subprocess.Popen([sys.executable, "-m", "tinydeploy", "deploy",
                             str(MLPERF / "pretrainedResnet_quant.tflite"), "--samples", str(samples),
                             "-o", str(project)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    marker = str(project)
    deadline = time.monotonic() + 120
    while not qemu_processes(marker):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "QEMU never started"
        time.sleep(0.2)
    time.sleep(1.0)  # validating now
    return proc, marker


def wait_gone(marker: str, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := qemu_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_sigkill_of_the_tool_takes_qemu_with_it(tmp_path):
    proc, marker = start_long_validation(tmp_path)
    proc.kill()
    proc.wait()
    left = wait_gone(marker)
    for pid in left:  # do not leave them running if the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    proc, marker = start_long_validation(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: terminated by SIGTERM"], err
    assert "Traceback" not in err
    assert wait_gone(marker, 2.0) == []
