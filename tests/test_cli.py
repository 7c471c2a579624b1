"""The tinydeploy command as a user meets it: the build acceptance run, and bad input.

Commands that need TensorFlow run in-process (click's CliRunner) to share one TF import; the
bad-input checks that do not run as real subprocesses, so the exit code and the absence of a
traceback are what a shell would see.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from paths import EXAMPLES, MLPERF, REPO
from tinydeploy.cli import cli

DIGITS = EXAMPLES / "digits"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("loading ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


@pytest.fixture(scope="module")
def digits_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "digits-nano33ble"
    result = CliRunner().invoke(cli, [
        "build", str(DIGITS / "digits.keras"), "--board", "nano33ble",
        "--calib", str(DIGITS / "calib.npz"), "--eval", str(DIGITS / "eval.npz"),
        "-o", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    return out, result


def test_build_writes_the_complete_project(digits_build):
    out, _ = digits_build
    for name in ("model.tflite", "report.json", "REPORT.md", "platformio.ini", "tinydeploy.json",
                 "src/main.cpp", "src/model_data.h", "src/model_data.cc", "src/model_settings.h",
                 "src/model_info.c", "src/op_resolver.h", "src/td_runtime_tflm.cc",
                 "src/td_link.c"):
        assert (out / name).is_file(), name


def test_c_array_holds_exactly_the_tflite_bytes(digits_build):
    out, _ = digits_build
    text = (out / "src" / "model_data.cc").read_text()
    body = text[text.index("{") + 1:text.rindex("}")]
    array = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert array == (out / "model.tflite").read_bytes()
    assert re.search(r"alignas\(16\) const unsigned char digits_tflite\[\]", text)


def test_resolver_registers_exactly_the_models_ops(digits_build):
    from tinydeploy import tflite

    out, _ = digits_build
    ops = tflite.load(out / "model.tflite").op_names
    resolver = (out / "src" / "op_resolver.h").read_text()
    registered = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert len(registered) == len(set(registered)) == len(ops)
    assert f"MicroMutableOpResolver<TD_OP_COUNT>" in resolver and f"TD_OP_COUNT {len(ops)}" in resolver
    from tinydeploy.tflm_ops import RESOLVER_METHODS
    assert sorted(registered) == sorted(RESOLVER_METHODS[op] for op in ops)


def test_int8_top1_is_within_one_point_of_float(digits_build):
    out, _ = digits_build
    acc = json.loads((out / "report.json").read_text())["accuracy"]
    assert acc["float_accuracy"] > 0.9
    assert abs(acc["float_accuracy"] - acc["int8_accuracy"]) <= 0.01


def test_existing_output_is_not_overwritten_without_force(digits_build):
    out, _ = digits_build
    before = (out / "model.tflite").read_bytes()
    result = CliRunner().invoke(cli, ["build", str(out / "model.tflite"), "--board", "nano33ble",
                                      "-o", str(out)])
    assert result.exit_code == 2 and "--force" in result.stderr
    assert (out / "model.tflite").read_bytes() == before


def test_wrong_calibration_shape_names_both_shapes(tmp_path):
    bad = tmp_path / "calib.npy"
    np.save(bad, np.zeros((10, 28, 28), np.float32))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["build", str(DIGITS / "digits.keras"), "--board", "nano33ble",
                                      "--calib", str(bad), "-o", str(out)])
    assert result.exit_code != 0
    assert_one_line_error(result.stderr, "(28, 28)", "(8, 8, 1)")
    assert not out.exists()


@pytest.fixture(scope="session")
def reduce_prod_tflite(tmp_path_factory):
    """A real int8 model with REDUCE_PROD, an op TFLite has and TFLM does not."""
    from tinydeploy.loading import tensorflow

    tf = tensorflow()
    inp = tf.keras.Input((4, 4, 2))
    x = tf.keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = tf.keras.layers.Lambda(lambda t: tf.math.reduce_prod(t, axis=[1, 2]))(x)
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.random((1, 4, 4, 2), np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("prod") / "prod.tflite"
    path.write_bytes(conv.convert())
    return path


def test_op_tflm_lacks_fails_the_build_naming_the_op(reduce_prod_tflite, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("build", reduce_prod_tflite, "--board", "nano33ble", "-o", out)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "REDUCE_PROD")
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "unknown-board", "folder"])
def test_bad_input_is_one_clear_line(tmp_path, case):
    ic = MLPERF / "pretrainedResnet_quant.tflite"
    model, board = ic, "nano33ble"
    if case == "missing":
        model = tmp_path / "nope.tflite"
    elif case == "text":
        model = tmp_path / "model.tflite"
        model.write_text("hello, I am not a model\n")
    elif case == "truncated":
        model = tmp_path / "cut.tflite"
        model.write_bytes(ic.read_bytes()[:40_000])
    elif case == "unknown-board":
        board = "arduino-uno-r9"
    elif case == "folder":
        model = tmp_path
    out = tmp_path / "out"
    proc = run_cli("build", model, "--board", board, "-o", out)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert not out.exists()
    if case == "unknown-board":
        assert "nano33ble" in proc.stderr  # it lists the known boards


def test_hybrid_tflite_is_refused_with_the_reason(digits_hybrid_tflite, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("build", digits_hybrid_tflite, "--board", "nano33ble", "-o", out)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "hybrid")
    assert not out.exists()


def test_check_vww_on_qemu_m3_with_tflm_is_a_one_line_ram_verdict():
    proc = run_cli("check", MLPERF / "vww_96_int8.tflite", "--board", "qemu-m3", "--runtime", "tflm")
    assert proc.returncode == 1
    verdict = proc.stdout.strip().splitlines()[-1]
    # TFLM's arena (~100 KB) cannot fit 64 KB of RAM; the 333 KB .tflite also overflows 256 KB flash.
    assert verdict.startswith("qemu-m3: RAM does not fit: needs ") and "of 65,536 B" in verdict


def test_check_all_boards_json_matrix():
    proc = run_cli("check", MLPERF / "ad01_int8.tflite", "--board", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) >= 13
    for row in rows:
        assert isinstance(row["fits"], bool)
        assert {"arena", "used", "available"} <= set(row["ram"])
        assert {"model", "used", "available"} <= set(row["flash"])
        assert row["flash"]["model"] > 0 and row["ram"]["arena"] > 0


def test_inspect_json_lists_ops_macs_and_support():
    proc = run_cli("inspect", MLPERF / "pretrainedResnet_quant.tflite", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["op_counts"] == {"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
                                 "FULLY_CONNECTED": 1, "SOFTMAX": 1}
    assert data["total_macs"] == 12_501_632
    assert data["tflm_missing"] == [] and data["native_missing"] == []


def test_boards_lists_every_profile_and_show_details():
    proc = run_cli("boards")
    assert proc.returncode == 0
    for board in ("nano33ble", "esp32", "esp32s3", "pico", "portenta_h7", "nucleo_l4r5zi",
                  "nucleo_f746zg", "teensy41", "xiao_nrf52840_sense", "wio_terminal",
                  "sparkfun_edge", "qemu-m4", "qemu-m3"):
        assert board in proc.stdout
    show = run_cli("boards", "show", "qemu-m3", "--json")
    assert json.loads(show.stdout)["ram_bytes"] == 65_536


def test_compile_writes_model_c_and_h_that_build_warning_free(tmp_path):
    import shutil

    out = tmp_path / "ad01_c"
    proc = run_cli("compile", MLPERF / "ad01_int8.tflite", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.c").is_file() and (out / "model.h").is_file()
    header = (out / "model.h").read_text()
    for api in ("int td_model_init(void)", "int8_t *td_model_input(int i)",
                "int td_model_invoke(void)", "const int8_t *td_model_output(int i)"):
        assert api in header
    compilers = [["gcc", "-std=c99"]]
    if shutil.which("arm-none-eabi-gcc"):
        compilers.append(["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-Os"])
    for cc in compilers:
        for source in sorted(out.glob("*.c")):
            built = subprocess.run([*cc, "-Wall", "-Wextra", "-Werror", "-c", str(source), "-o",
                                    str(tmp_path / (source.stem + ".o"))], capture_output=True, text=True)
            assert built.returncode == 0, (cc[0], source.name, built.stderr)


def test_vww_fits_qemu_m3_only_with_the_native_runtime():
    """Measured, not assumed: the native planner's arena (27,816 B) fits the 64 KB part; TFLM's does not.

    tests/test_deploy.py links and runs firmware to the same limits the check uses."""
    proc = run_cli("check", MLPERF / "vww_96_int8.tflite", "--board", "qemu-m3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("qemu-m3: fits")
    assert "with --runtime tflm: qemu-m3: RAM does not fit" in lines[-2]
