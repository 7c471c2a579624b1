"""TFLM firmware on the emulated boards, built with the pinned library as PlatformIO builds it.

Real parts end to end: the Arduino_TensorFlowLite library (07d1cca, CMSIS-NN kernels) compiled by
arm-none-eabi-g++ for the Cortex-M4 (DSP path) and the Cortex-M3 (portable path), linked into the
rendered project, run in QEMU, fed real bytes over the emulated UART, and compared with the same
library built for this host. Needs the library (the ``tflm_lib`` fixture skips without it).
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tinydeploy.cli import cli

from paths import EXAMPLES, MLPERF

pytestmark = [
    pytest.mark.qemu, pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")),
                       reason="needs qemu-system-arm and arm-none-eabi-g++ (bash .ci/setup)"),
]

LIBRARY_NAME = "Arduino_TensorFlowLite"


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def random_samples(path, shape, n, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(-128, 128, (n, *shape), dtype=np.int8))
    return path


def deploy(tmp_path, model, samples, tflm_lib, *extra):
    report = tmp_path / "report.json"
    result = invoke("deploy", model, "--runtime", "tflm", "--tflm-lib", tflm_lib,
                    "--samples", samples, "-o", tmp_path / "project", "--json", report, *extra)
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(report.read_text()), result


def test_digits_on_qemu_m4_are_bit_exact_with_the_devices_own_library(tmp_path, tflm_lib,
                                                                      digits_int8_path):
    report, result = deploy(tmp_path, digits_int8_path, EXAMPLES / "digits" / "eval.npz", tflm_lib)
    assert report["runtime"] == "tflm" and report["samples"] == 360
    assert report["exact_match"] == 1.0 and report["max_abs_diff"] == 0
    assert report["accuracy"] == report["reference_accuracy"] > 0.95
    assert LIBRARY_NAME in report["reference"] and "host build" in report["reference"]
    assert f"reference       {LIBRARY_NAME}" in result.output
    manifest = json.loads((tmp_path / "project" / "tinydeploy.json").read_text())
    assert manifest["runtime"] == "tflm" and manifest["tflm_library"]["name"] == LIBRARY_NAME


@pytest.mark.parametrize("name, shape, n", [
    ("pretrainedResnet_quant.tflite", (32, 32, 3), 24),
    ("ad01_int8.tflite", (640,), 200),
    ("vww_96_int8.tflite", (96, 96, 3), 3),
])
def test_mlperf_models_on_qemu_m4_are_bit_exact(tmp_path, tflm_lib, name, shape, n):
    samples = random_samples(tmp_path / "samples.npz", shape, n)
    report, _ = deploy(tmp_path, MLPERF / name, samples, tflm_lib)
    assert (report["samples"], report["exact_match"], report["max_abs_diff"]) == (n, 1.0, 0)
    assert report["arena_bytes"] > 0 and LIBRARY_NAME in report["reference"]


def test_a_model_that_fits_runs_on_qemu_m3_with_the_portable_kernels(tmp_path, tflm_lib,
                                                                   digits_int8_path):
    report, _ = deploy(tmp_path, digits_int8_path, EXAMPLES / "digits" / "eval.npz", tflm_lib,
                       "--board", "qemu-m3", "--limit", "120")
    assert (report["runtime"], report["samples"], report["exact_match"]) == ("tflm", 120, 1.0)


def _settings_arena(project) -> int:
    text = (project / "src" / "model_settings.h").read_text()
    return int(re.search(r"#define TD_ARENA_BYTES (\d+)", text).group(1))


def test_the_rendered_arena_is_the_smallest_that_initialises(tmp_path, tflm_lib):
    """TD_ARENA_BYTES initialises on the device; 16 bytes less does not (the handshake's status)."""
    from tinydeploy.device import build_firmware, open_project
    from tinydeploy.link import DeviceLink
    from tinydeploy.runners import QemuRunner

    built = invoke("build", MLPERF / "ad01_int8.tflite", "--board", "qemu-m4", "--runtime", "tflm",
                   "--tflm-lib", tflm_lib, "-o", tmp_path / "ad", "--json")
    assert built.exit_code == 0, built.output + built.stderr
    check = json.loads(built.stdout)["check"]
    project = open_project(tmp_path / "ad", str(tflm_lib))
    arena = _settings_arena(project.path)
    assert arena == check["ram"]["arena"] and check["source"].startswith("measured with")

    def init_status(arena_bytes: int) -> int:
        settings = project.path / "src" / "model_settings.h"
        settings.write_text(re.sub(r"#define TD_ARENA_BYTES \d+", f"#define TD_ARENA_BYTES {arena_bytes}",
                                   settings.read_text()))
        build_firmware(project)
        with QemuRunner.from_board(project.board).run(project.elf) as device:
            with DeviceLink(device.port, open_timeout=device.open_timeout) as link:
                return link.hello(require_ready=False).init_status

    assert init_status(arena) == 0
    assert init_status(arena - 16) == -4  # AllocateTensors fails: the arena is the smallest


def test_check_reports_the_measured_arena_and_code_for_a_real_board(tmp_path, tflm_lib):
    result = invoke("check", MLPERF / "ad01_int8.tflite", "--board", "nano33ble", "--tflm-lib",
                    tflm_lib, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    check = json.loads(result.stdout)
    assert check["source"] == f"measured with {LIBRARY_NAME} 2.4.0-ALPHA on a Cortex-M4 (DSP kernels)"
    # the library needs more than the 2,260 B that TFLM's reference kernels report on an M4:
    # CMSIS-NN's own OpData and the planner's allocation-time peak
    assert 2_800 <= check["ram"]["arena"] <= 3_100
    assert "arena_margin" not in check["ram"]


def test_flash_verdict_is_never_below_the_real_firmware(tmp_path, tflm_lib, digits_int8_path):
    from tinydeploy.device import build_firmware, open_project

    built = invoke("build", digits_int8_path, "--board", "qemu-m4", "--runtime", "tflm",
                   "--tflm-lib", tflm_lib, "-o", tmp_path / "d", "--json")
    assert built.exit_code == 0, built.output + built.stderr
    flash = json.loads(built.stdout)["check"]["flash"]
    firmware = build_firmware(open_project(tmp_path / "d", str(tflm_lib)))
    assert firmware.flash_bytes <= flash["used"] <= firmware.flash_bytes * 1.25


def test_the_pytest_plugin_runs_tflm_firmware_against_its_own_library(tinydeploy_device, tflm_lib,
                                                                      monkeypatch):
    import numpy as np

    monkeypatch.setenv("TINYDEPLOY_TFLM_LIB", str(tflm_lib))
    digits = EXAMPLES / "digits"
    dut = tinydeploy_device(digits / "digits.keras", calib=str(digits / "calib.npz"), runtime="tflm")
    data = np.load(digits / "eval.npz")
    report = dut.expect_bit_exact(data["x"][:40], data["y"][:40])
    assert dut.info.runtime == "tflm" and LIBRARY_NAME in report.reference
