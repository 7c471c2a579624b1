"""The device link as the `validate` command meets it: --timeout, and misbehaving devices (fakes,
see fakedevice.py) turned into one `error:` line and exit 2 by the real CLI in a subprocess."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest

from paths import MLPERF, REPO

from fakedevice import FakeDevice, hello_payload, tensor_spec
from misbehaviours import _after_hello


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def ad_project(tmp_path_factory):
    """The MLPerf anomaly detector (an int8 .tflite, used as is) rendered for qemu-m4."""
    out = tmp_path_factory.mktemp("ad") / "ad-qemu-m4"
    proc = run_cli("build", MLPERF / "ad01_int8.tflite", "--board", "qemu-m4", "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def _hello_for(project, **fields) -> bytes:
    from tinydeploy.analyze import analyze

    model = (project / "model.tflite").read_bytes()
    analysis = analyze(model)
    specs = [tensor_spec(shape=tuple(t.shape), scale=t.scale, zero_point=t.zero_point)
             for t in (*analysis.inputs, *analysis.outputs)]
    n_in = len(analysis.inputs)
    return hello_payload(model_hash=hashlib.sha256(model).digest(), inputs=specs[:n_in],
                         outputs=specs[n_in:], **fields)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_fake_device_silent_after_hello_fails_validate_in_seconds(ad_project):
    device = FakeDevice(_after_hello(lambda dev, frame: None), hello=_hello_for(ad_project))
    try:
        start = time.monotonic()
        proc = run_cli("validate", ad_project, "--port", device.url, "--timeout", "1.5", "--limit", "3")
        took = time.monotonic() - start
    finally:
        device.close()
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "stopped answering: nothing received" in line
    assert "up to 1.5 s" in proc.stderr  # the status line shows the bound in force
    assert took < 20, took  # 1.5 s + transfer + two probes, plus the CLI's start-up


def test_fake_tflm_device_that_could_not_allocate_its_arena_says_so(ad_project):
    hello = _hello_for(ad_project, runtime=b"tflm", init_status=-4)
    device = FakeDevice(hello=hello)
    try:
        proc = run_cli("validate", ad_project, "--port", device.url, "--limit", "3")
    finally:
        device.close()
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "TFLM could not allocate its tensor arena" in line and "larger arena" in line
    assert len(device.requests) == 1  # refused right after the handshake, no sample sent


def test_timeout_must_be_a_positive_number(ad_project):
    proc = run_cli("validate", ad_project, "--timeout", "0")
    assert proc.returncode == 2 and "--timeout" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.qemu
def test_real_tflm_firmware_whose_arena_is_too_small_is_reported_as_such(tflm_lib, tmp_path):
    """Issue 7's case on the real thing: the anomaly detector on TFLM (the pinned library) in
    qemu-m4 with an arena too small to initialise. validate says so right after the handshake,
    with the fix - not 'input 0 is 640 bytes, the device expects 0'."""
    out = tmp_path / "ad-tflm"
    proc = run_cli("build", MLPERF / "ad01_int8.tflite", "--board", "qemu-m4", "--runtime", "tflm",
                   "--tflm-lib", tflm_lib, "-o", out)
    assert proc.returncode == 0, proc.stderr
    settings = out / "src" / "model_settings.h"
    text = settings.read_text()
    assert "#define TD_ARENA_BYTES " in text
    settings.write_text("\n".join("#define TD_ARENA_BYTES 1000" if line.startswith("#define TD_ARENA_BYTES ")
                                  else line for line in text.splitlines()) + "\n")
    proc = run_cli("flash", out, "--tflm-lib", tflm_lib)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("validate", out, "--tflm-lib", tflm_lib, "--limit", "3")
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "TFLM could not allocate its tensor arena (AllocateTensors failed) (status -4)" in line
    assert "larger arena" in line and "expects 0" not in proc.stderr
