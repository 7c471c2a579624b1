"""Build -> flash -> validate on the emulated boards: real arm-none-eabi-gcc, real QEMU, real UART bytes.

These are hardware-in-the-loop tests run through tinydeploy's own pytest plugin: with no
--tinydeploy-port they run on qemu-m4; with a board attached they run there unchanged.
"""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from paths import EXAMPLES, MLPERF
from tinydeploy.cli import cli

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                       reason="needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)"),
]
DIGITS = EXAMPLES / "digits"


@pytest.fixture(scope="module")
def digits_eval():
    data = np.load(DIGITS / "eval.npz")
    return data["x"], data["y"]


def test_digits_on_the_device_match_the_reference_and_its_accuracy(tinydeploy_device, digits_eval):
    x, y = digits_eval
    dut = tinydeploy_device(DIGITS / "digits.keras", calib=str(DIGITS / "calib.npz"))
    assert dut.info.runtime == "native" and dut.info.arena_bytes > 0
    report = dut.expect_bit_exact(x[:80], y[:80])
    assert report.exact_match == 1.0 and report.max_abs_diff == 0
    assert report.accuracy == report.reference_accuracy > 0.9
    assert report.latency_us["min"] > 0


def test_dut_runs_single_float_samples(tinydeploy_device, digits_eval):
    from tinydeploy.evaluate import micro_outputs

    x, _ = digits_eval
    dut = tinydeploy_device(DIGITS / "digits.keras", calib=str(DIGITS / "calib.npz"))
    (out,) = dut.run(x[3])
    np.testing.assert_array_equal(out.reshape(-1), micro_outputs(dut.model_bytes, x[3:4],
                                                                 dequantize=False)[0])


def test_deploy_image_classifier_is_bit_exact_and_writes_json(tmp_path):
    samples = tmp_path / "ic.npz"
    rng = np.random.default_rng(7)
    np.savez(samples, x=rng.integers(-128, 128, (12, 32, 32, 3), dtype=np.int8))
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(cli, [
        "deploy", str(MLPERF / "pretrainedResnet_quant.tflite"), "--board", "qemu-m4",
        "--samples", str(samples), "-o", str(tmp_path / "ic"), "--json", str(report_path)])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(report_path.read_text())
    assert report["samples"] == 12 and report["exact_match"] == 1.0
    assert report["max_abs_diff"] == 0 and report["top1_agreement"] == 1.0
    assert report["accuracy"] is None           # no labels given
    assert report["arena_bytes"] > 0
    assert 0 < report["latency_us"]["min"] <= report["latency_us"]["median"] <= report["latency_us"]["max"]


def test_validate_refuses_firmware_built_for_another_model(tmp_path):
    out = tmp_path / "ad"
    runner = CliRunner()
    built = runner.invoke(cli, ["build", str(MLPERF / "ad01_int8.tflite"), "--board", "qemu-m4",
                                "-o", str(out)])
    assert built.exit_code == 0, built.stderr
    assert runner.invoke(cli, ["flash", str(out)]).exit_code == 0
    # the user swaps the model file: the firmware still runs the old one
    (out / "model.tflite").write_bytes((DIGITS.parent / "sine" / "sine_int8.tflite").read_bytes()
                                       if (DIGITS.parent / "sine" / "sine_int8.tflite").exists()
                                       else (MLPERF / "pretrainedResnet_quant.tflite").read_bytes())
    result = runner.invoke(cli, ["validate", str(out), "--limit", "2"])
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr and "model" in result.stderr.lower()
    assert "hash" in result.stderr.lower() or "another model" in result.stderr.lower()


def test_tflm_on_qemu_m3_fails_with_the_memory_verdict_and_builds_nothing(tmp_path, tflm_lib):
    out = tmp_path / "vww"
    result = CliRunner().invoke(cli, ["deploy", str(MLPERF / "vww_96_int8.tflite"), "--board",
                                      "qemu-m3", "--runtime", "tflm", "--tflm-lib", str(tflm_lib),
                                      "-o", str(out)])
    assert result.exit_code == 1
    assert "RAM does not fit" in result.stderr and not out.exists()


def test_a_firmware_that_overflows_the_linker_limits_is_a_memory_verdict(tmp_path):
    """--force renders a model too big for qemu-m3's flash; the board's linker script refuses it."""
    out = tmp_path / "ad"
    runner = CliRunner()
    # ad01 int8 is 270 KB of weights: more than qemu-m3's 256 KB of flash.
    built = runner.invoke(cli, ["build", str(MLPERF / "ad01_int8.tflite"), "--board", "qemu-m3",
                                "-o", str(out), "--force"])
    assert built.exit_code == 0, built.stderr
    flashed = runner.invoke(cli, ["flash", str(out)])
    assert flashed.exit_code == 1
    lines = flashed.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not fit qemu-m3: FLASH" in lines[0]  # a verdict, not ld's dump
    assert "13,092 bytes" in lines[0] or "bytes" in lines[0]
