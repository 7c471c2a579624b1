"""Issue 9: every bad input and fault gets one clear line, and nothing is lost or left behind.

One test (or a few) per finding of the issue that this part covers: the converter in a child
process, recurrent layers, sys.exit() in user code, C injection through names, two builds racing
for one folder, leftovers, unwritable or foreign output folders, unreadable model paths, corrupt
manifests, text labels, large activations, FIFOs, folder modes. The broad battery of bad inputs is
tests/test_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from paths import MLPERF, REPO
from tinydeploy.cli import cli

AD01 = MLPERF / "ad01_int8.tflite"
IC = MLPERF / "pretrainedResnet_quant.tflite"
ARM_GCC = shutil.which("arm-none-eabi-gcc")


def run_cli(*args, cwd=None, env=None, timeout=300, umask=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})),
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def one_error_line(stderr: str, *words: str) -> str:
    """The single ``error:`` line of ``stderr`` (and no traceback, no internal error)."""
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    for word in words:
        assert word.lower() in errors[0].lower(), (word, errors[0])
    return errors[0]


def invoke(*args, cwd=None):
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temporary directory of the test's own, for tinydeploy and its converter child alike."""
    import tempfile

    tmp = tmp_path / "TMP"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


# --------------------------------------------------------------------------- 1: the converter child

@pytest.fixture(scope="session")
def recurrent_models(tmp_path_factory):
    """Keras 3 LSTM, GRU and Bidirectional LSTM models (with fixed and variable time steps), a
    tf_keras LSTM as a
    Keras-2 .h5, a float .tflite whose LSTM is a WHILE loop, and sequence samples."""
    from tinydeploy.loading import quiet, tensorflow

    tf = tensorflow()
    with quiet():
        import keras
        import tf_keras
    folder = tmp_path_factory.mktemp("rnn")
    keras.utils.set_random_seed(3)
    paths = {}
    L = keras.layers
    for name, layer, steps in (("lstm", lambda: L.LSTM(8), 10), ("gru", lambda: L.GRU(8), 10),
                               ("lstm_var", lambda: L.LSTM(8), None),
                               ("bilstm", lambda: L.Bidirectional(L.LSTM(4)), 10)):
        model = keras.Sequential([keras.Input((steps, 3)), layer(), keras.layers.Dense(2)])
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    lstm3 = keras.models.load_model(paths["lstm"])
    with quiet():
        with __import__("tempfile").TemporaryDirectory() as saved:
            lstm3.export(saved, format="tf_saved_model", verbose=False,
                         input_signature=[tf.TensorSpec((1, 10, 3), tf.float32)])
            paths["while_float"] = folder / "lstm_while_float.tflite"
            paths["while_float"].write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved)
                                             .convert())
        tf_keras.utils.set_random_seed(3)
        k2 = tf_keras.Sequential([tf_keras.Input((10, 3)), tf_keras.layers.LSTM(8),
                                  tf_keras.layers.Dense(2)])
        paths["lstm_k2"] = folder / "lstm_k2.h5"
        k2.save(paths["lstm_k2"])
    rng = np.random.default_rng(5)
    paths["seq"] = folder / "seq.npz"
    x = rng.random((40, 10, 3), np.float32)
    np.savez(paths["seq"], x=x, y=lstm3.predict(x, verbose=0))
    return paths


@pytest.mark.slow
def test_tensorflow_calibrator_crash_is_contained_in_the_worker(recurrent_models, private_tmp):
    """A WHILE-loop model segfaults TensorFlow's calibrator (TF 2.21); in the worker it is a
    ModelError naming the step, and the worker's temporary files are gone."""
    from tinydeploy import isolation, tflite
    from tinydeploy.errors import ModelError

    data = recurrent_models["while_float"].read_bytes()
    assert "WHILE" in tflite.parse(data).op_names
    with pytest.raises(ModelError) as err:
        isolation.run("tinydeploy.quantize", "calibrate_float_tflite", data,
                      np.random.default_rng(0).random((4, 10, 3)), crash_fix="try something")
    assert "TensorFlow's calibration of a float .tflite crashed (SIGSEGV" in str(err.value)
    assert str(err.value).endswith("(try something)")
    assert list(private_tmp.iterdir()) == []
    # the next call gets a fresh worker
    assert isolation.run("tinydeploy.build", "model_name", Path("x/y.keras"), crash_fix="-") == "y"


def test_native_crash_in_calibration_code_is_one_line_through_the_cli(tmp_path, digits_float_tflite):
    """A --calib function that segfaults runs in the converter child: one line, exit 2."""
    (tmp_path / "crashing_calib.py").write_text(textwrap.dedent("""
        import ctypes
        def samples():
            ctypes.string_at(0)
    """))
    tmp = tmp_path / "TMP"
    tmp.mkdir()
    proc = run_cli("build", digits_float_tflite, "--board", "qemu-m4", "--calib",
                   "crashing_calib:samples", "-o", tmp_path / "out", cwd=tmp_path,
                   env={"TMPDIR": str(tmp)})
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc.stderr, "reading the calibration samples crashing_calib:samples",
                   "crashed (SIGSEGV")
    assert not (tmp_path / "out").exists() and list(tmp.iterdir()) == []


@pytest.mark.slow
def test_float_tflite_with_a_while_loop_is_refused_before_the_calibrator(recurrent_models):
    proc = run_cli("build", recurrent_models["while_float"], "--board", "nano33ble", "--calib",
                   "random", "-o", recurrent_models["seq"].parent / "never")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "WHILE", "unroll")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru", "lstm_var", "bilstm"])
def test_keras3_recurrent_layers_are_unrolled_and_run_in_int8(recurrent_models, tmp_path, name):
    """The issue's `build lstm.keras --calib random` died with SIGSEGV (exit 139); now the loop is
    unrolled to plain int8 ops that TFLM runs, and int8 tracks float closely."""
    from tinydeploy import tflite

    out = tmp_path / "out"
    calib = "random" if name != "lstm_var" else recurrent_models["seq"]
    result = invoke("build", recurrent_models[name], "--board", "nano33ble", "--calib", calib,
                    "--eval", recurrent_models["seq"], "-o", out, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert any("unrolled over 10 time steps" in w for w in report["quantization"]["warnings"])
    ops = tflite.load(out / "model.tflite").op_names
    assert "WHILE" not in ops and "FULLY_CONNECTED" in ops
    if name == "lstm":  # the targets are this model's float outputs
        accuracy = report["accuracy"]
        assert accuracy["task"] == "regression" and accuracy["rmse"] < 0.05


@pytest.mark.slow
def test_tf_keras_lstm_becomes_tflm_int8_unidirectional_sequence_lstm(recurrent_models, tmp_path):
    from tinydeploy import tflite

    out = tmp_path / "out"
    result = invoke("build", recurrent_models["lstm_k2"], "--board", "nano33ble", "--calib",
                    recurrent_models["seq"], "-o", out)
    assert result.exit_code == 0, result.output + result.stderr
    model = tflite.load(out / "model.tflite")
    assert model.op_names[0] == "UNIDIRECTIONAL_SEQUENCE_LSTM"
    assert "AddUnidirectionalSequenceLSTM" in (out / "src" / "op_resolver.h").read_text()
    # the native runtime cannot run it: on an emulated board the check says so, nothing is built
    refused = invoke("build", out / "model.tflite", "--board", "qemu-m4", "--runtime", "native",
                     "-o", tmp_path / "native")
    assert refused.exit_code == 1 and "lacks" in refused.stderr
    assert not (tmp_path / "native").exists()


# --------------------------------------------------------------------------- 4: sys.exit in user code

CALIB_MODULE = """
import sys
import numpy as np

def exits():
    sys.exit()

def exits_zero():
    sys.exit(0)

def exits_text():
    sys.exit("bye")

def exits_midway():
    yield np.zeros(640, np.float32)
    raise SystemExit(0)

class Custom(BaseException):
    pass

def base_exception():
    raise Custom("not an Exception")
"""


@pytest.mark.parametrize("function, words", [
    ("exits", ["called sys.exit()"]), ("exits_zero", ["called sys.exit(0)"]),
    ("exits_text", ["sys.exit('bye')"]), ("exits_midway", ["sys.exit(0)"]),
    ("base_exception", ["Custom: not an Exception"])])
def test_sys_exit_in_a_calibration_function_is_an_error(tmp_path, function, words):
    (tmp_path / "user_calib.py").write_text(CALIB_MODULE)
    proc = run_cli("build", AD01, "--board", "qemu-m4", "--calib", f"user_calib:{function}",
                   "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2
    one_error_line(proc.stderr, *words)
    assert not (tmp_path / "out").exists()


def test_sys_exit_while_importing_the_module_is_an_error(tmp_path):
    (tmp_path / "exit_at_import.py").write_text("import sys\nsys.exit(0)\n")
    proc = run_cli("build", AD01, "--board", "qemu-m4", "--calib", "exit_at_import:x",
                   "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "importing exit_at_import", "sys.exit(0)")


@pytest.fixture(scope="module")
def ad01_project(tmp_path_factory):
    out = tmp_path_factory.mktemp("proj") / "ad01-qemu-m4"
    result = invoke("build", AD01, "--board", "qemu-m4", "-o", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out


def test_sys_exit_in_a_samples_function_fails_validate_before_the_device(ad01_project, tmp_path):
    (tmp_path / "user_calib.py").write_text(CALIB_MODULE)
    proc = run_cli("validate", ad01_project, "--samples", "user_calib:exits_zero", cwd=tmp_path)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "sys.exit(0)", "validation samples")
    assert "starting" not in proc.stderr  # QEMU never started


# --------------------------------------------------------------------------- 5: C injection

HOSTILE_FILE_NAMES = ["evil\n#error injected through the file name",
                      "ends_in_a_backslash\\", "tab\tcr\rquote\"star*trigraph??=",
                      "üñí code 𝛑"]


def _hostile_tensor_names(data: bytes) -> bytes:
    """ad01 with its input and output tensor names replaced, in place, by C-breaking text."""
    data = bytearray(data)
    for old, new in ((b"input_1\x00", b"\n#error\x00"), (b"Identity\x00", b"??/\n*/ \\\x00")):
        assert len(old) == len(new) and data.count(old) == 1
        at = data.index(old)
        data[at:at + len(old)] = new
    return bytes(data)


def _probe_model_files(src: Path, work: Path, model: bytes, spec) -> None:
    """Compile the model's C files with a probe that prints what they define; check the values."""
    (work / "probe.cc").write_text(textwrap.dedent("""
        #include <cstdio>
        #include "model_data.h"
        #include "model_settings.h"
        int main() {
            const int dims[] = TD_INPUT0_DIMS;
            std::printf("%u %d %d %d %d %d %c%c%c%c\\n", TD_MODEL_DATA_LEN, TD_NUM_INPUTS,
                        TD_NUM_OUTPUTS, TD_INPUT0_RANK, (int)(sizeof dims / sizeof dims[0]),
                        TD_OUTPUT0_ELEMENTS, TD_MODEL_DATA[4], TD_MODEL_DATA[5],
                        TD_MODEL_DATA[6], TD_MODEL_DATA[7]);
        }
    """))
    exe = work / "probe"
    built = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", f"-I{src}",
                            str(work / "probe.cc"), str(src / "model_data.cc"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    printed = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert printed == [str(len(model)), "1", "1", str(len(spec.inputs[0].shape)),
                       str(len(spec.inputs[0].shape)), str(spec.outputs[0].size), "TFL3"]
    info = subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", f"-I{src}",
                           f"-I{REPO / 'firmware'}", "-c", str(src / "model_info.c"), "-o",
                           str(work / "model_info.o")], capture_output=True, text=True)
    assert info.returncode == 0, info.stderr


@pytest.mark.parametrize("file_name", HOSTILE_FILE_NAMES)
def test_hostile_model_file_names_compile_to_the_same_firmware(tmp_path, file_name):
    """Before, a newline in the file name put '#error ...' on its own line of model_data.cc."""
    from tinydeploy.analyze import analyze

    model = tmp_path / f"{file_name}.tflite"
    shutil.copyfile(AD01, model)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:  # the chart draws what its font has
        warnings.simplefilter("always")
        result = invoke("build", model, "--board", "qemu-m4", "-o", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert (out / "memory.png").read_bytes()[:4] == b"\x89PNG"
    src = out / "src"
    for name in ("model_data.cc", "model_data.h", "model_settings.h"):
        for line in (src / name).read_text().splitlines():
            assert not line.startswith("#error") and not line.rstrip().endswith("\\"), (name, line)
    work = tmp_path / "work"
    work.mkdir()
    _probe_model_files(src, work, AD01.read_bytes(), analyze(AD01.read_bytes()))
    if ARM_GCC:
        flashed = invoke("flash", out)
        assert flashed.exit_code == 0, flashed.output + flashed.stderr
        assert (out / "build" / "firmware.elf").is_file()


@pytest.mark.parametrize("board", ["qemu-m4", "nano33ble"])
def test_hostile_tensor_names_stay_inside_comments(tmp_path, board):
    from tinydeploy.analyze import analyze

    data = _hostile_tensor_names(AD01.read_bytes())
    spec = analyze(data)
    assert spec.inputs[0].name == "\n#error" and spec.outputs[0].name == "??/\n*/ \\"
    model = tmp_path / "names.tflite"
    model.write_bytes(data)
    out = tmp_path / "out"
    result = invoke("build", model, "--board", board, "-o", out)
    assert result.exit_code == 0, result.output + result.stderr
    src = out / "src"
    settings = (src / "model_settings.h").read_text()
    assert "#error" not in settings.replace('"<U+000A>#error"', "")
    work = tmp_path / "work"
    work.mkdir()
    _probe_model_files(src, work, data, spec)
    if board == "qemu-m4" and ARM_GCC:
        flashed = invoke("flash", out)
        assert flashed.exit_code == 0, flashed.output + flashed.stderr
    if board == "nano33ble":  # op_resolver.h with the stub TFLM headers
        (work / "resolver.cc").write_text('#include "op_resolver.h"\nint main() { return 0; }\n')
        built = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", f"-I{src}",
                                f"-I{REPO / 'tests' / 'stubs' / 'tflm'}", "-c",
                                str(work / "resolver.cc"), "-o", str(work / "r.o")],
                               capture_output=True, text=True)
        assert built.returncode == 0, built.stderr


def test_c_comment_filter_cannot_be_escaped():
    from tinydeploy.render import c_comment

    for text in ["a\nb", "x*/y", "/*", "p??/", "q\\", "\r", "\u2028", "a\x00b", "é" * 300]:
        safe = c_comment(text)
        assert "\n" not in safe and "\r" not in safe and "*" not in safe and "\\" not in safe
        assert "??" not in safe and "\x00" not in safe and len(safe) <= 160
        assert safe.isascii() and safe.isprintable()


def test_error_lines_escape_newlines_in_names(tmp_path):
    missing = tmp_path / "no\nsuch\nmodel.tflite"
    proc = run_cli("build", missing, "--board", "qemu-m4")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "no\\nsuch\\nmodel.tflite")
    assert all(not ln.startswith(("such", "model")) for ln in proc.stderr.splitlines())


# --------------------------------------------------------------------------- 6: one writer per folder

def test_two_builds_into_one_folder_one_wins_and_the_loser_says_so(tmp_path):
    """Before, both exited 0 without --force (5 of 12 tries) and one model was lost."""
    import hashlib

    models = {"ad01": AD01, "ic": IC}
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        procs = {name: subprocess.Popen(
            [sys.executable, "-m", "tinydeploy", "build", str(path), "--board", "qemu-m4", "-o",
             str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, path in models.items()}
        results = {name: (p.wait(timeout=300), p.stderr.read()) for name, p in procs.items()}
        winners = [name for name, (code, _) in results.items() if code == 0]
        assert len(winners) == 1, results
        (loser,) = set(models) - set(winners)
        code, stderr = results[loser]
        assert code == 2
        line = one_error_line(stderr)
        assert "already exists" in line or "another tinydeploy" in line
        written = hashlib.sha256((out / "model.tflite").read_bytes()).hexdigest()
        assert written == hashlib.sha256(models[winners[0]].read_bytes()).hexdigest()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_folder_held_by_another_tinydeploy_is_refused_at_once(tmp_path):
    from tinydeploy.output import claim_output

    out = tmp_path / "held"
    with claim_output(out, force=True):
        proc = run_cli("build", AD01, "--board", "qemu-m4", "-o", out, "--force")
    assert proc.returncode == 2
    one_error_line(proc.stderr, f"another tinydeploy (pid {os.getpid()}) is writing")
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 7: nothing left behind

def test_leftovers_of_a_killed_build_are_removed_by_the_next(tmp_path):
    out = tmp_path / "proj"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from tinydeploy.output import staged_output
        with staged_output({str(out)!r}, False) as stage:
            (stage / "model.tflite").write_bytes(os.urandom(1 << 20))
            os.kill(os.getpid(), signal.SIGKILL)
    """)], cwd=REPO)
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert any(".proj.tinydeploy-stage-" in name for name in left) and not out.exists()
    result = invoke("build", AD01, "--board", "qemu-m4", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]


@pytest.mark.slow
def test_sigkill_during_conversion_kills_the_converter_and_its_files_go_next_time(tmp_path):
    """The converter child dies with the tool (PR_SET_PDEATHSIG), and the next run removes the
    call folder a killed tool could not."""
    from paths import EXAMPLES

    tmp = tmp_path / "TMP"
    tmp.mkdir()
    digits = EXAMPLES / "digits"
    args = ["build", digits / "digits.keras", "--board", "qemu-m4", "--calib",
            digits / "calib.npz", "-o", tmp_path / "out"]
    tool = subprocess.Popen([sys.executable, "-m", "tinydeploy", *map(str, args)], cwd=REPO,
                            env=dict(os.environ, TMPDIR=str(tmp)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp.glob("tinydeploy-work-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp.glob("tinydeploy-work-*")), "the converter call never started"
    children = subprocess.run(["pgrep", "-P", str(tool.pid)], capture_output=True,
                              text=True).stdout.split()
    assert children, "no converter child"
    tool.kill()
    tool.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "the child outlived the tool"
    assert list(tmp.glob("tinydeploy-work-*")) and not (tmp_path / "out").exists()
    again = run_cli("build", AD01, "--board", "qemu-m4", "-o", tmp_path / "out",
                    env={"TMPDIR": str(tmp)})
    assert again.returncode == 0, again.stderr
    assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TMP", "out"]  # no lock, no stage


def test_output_dot_is_refused_and_leaves_nothing(ad01_project, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(ad01_project, project)
    before = sorted(p.name for p in project.iterdir())
    proc = run_cli("build", AD01, "--board", "qemu-m4", "-o", ".", "--force", cwd=project)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "folder you are in")
    assert sorted(p.name for p in project.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


@pytest.mark.parametrize("intruder", [".git", "notes.txt"])
def test_force_never_deletes_a_folder_tinydeploy_did_not_write(tmp_path, intruder):
    out = tmp_path / "mine"
    out.mkdir()
    (out / intruder).mkdir() if intruder == ".git" else (out / intruder).write_text("keep me")
    proc = run_cli("build", AD01, "--board", "qemu-m4", "-o", out, "--force")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "tinydeploy did not write")
    assert (out / intruder).exists()


def test_force_replaces_a_tinydeploy_project_even_with_a_build_folder(ad01_project, tmp_path):
    out = tmp_path / "p"
    shutil.copytree(ad01_project, out)
    (out / "build").mkdir()
    result = invoke("build", IC, "--board", "qemu-m4", "-o", out, "--force")
    assert result.exit_code == 0, result.stderr
    assert not (out / "build").exists()
    assert json.loads((out / "tinydeploy.json").read_text())["name"] == "pretrainedResnet_quant"


def test_existing_output_is_reported_before_the_model_is_loaded(tmp_path, monkeypatch):
    from tinydeploy import build

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(build, "prepare", no_loading)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    for command in (["build", "--board", "nano33ble"], ["deploy"], ["compile"]):
        result = invoke(*command, MLPERF / "vww_96_int8.tflite", "-o", tmp_path / "out")
        assert result.exit_code == 2, result.output + result.stderr
        one_error_line(result.stderr, "already exists")


def test_deploy_with_bad_samples_fails_before_building(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.array(["a", "b"]))
    out = tmp_path / "proj"
    proc = run_cli("deploy", AD01, "--samples", bad, "-o", out)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "not numbers")
    assert "loading" not in proc.stderr and not out.exists()


def test_deploy_with_samples_of_the_wrong_shape_fails_before_rendering(tmp_path):
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 7), np.float32))
    out = tmp_path / "proj"
    proc = run_cli("deploy", AD01, "--samples", wrong, "-o", out)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "(7,)", "(640,)")
    assert not out.exists() and list(tmp_path.iterdir()) == [wrong]


def test_deploy_removes_the_project_it_could_not_flash(tmp_path, monkeypatch):
    from tinydeploy import device
    from tinydeploy.errors import BuildError

    def cannot(*args, **kwargs):
        raise BuildError("arm-none-eabi-gcc failed: simulated", "see above")

    monkeypatch.setattr(device, "flash", cannot)
    out = tmp_path / "proj"
    result = invoke("deploy", AD01, "-o", out)
    assert result.exit_code == 2
    one_error_line(result.stderr, "simulated")
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 8: clear lines

def test_object_arrays_are_refused_naming_the_array(tmp_path):
    bad = tmp_path / "objects.npz"
    with open(bad, "wb") as f:
        np.savez(f, x=np.array([np.zeros(640), None], dtype=object))
    proc = run_cli("build", AD01, "--board", "qemu-m4", "--eval", bad, "-o", tmp_path / "o")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "array 'x'", "Python objects")


def test_text_labels_with_eval_are_refused(tmp_path):
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((4, 640), np.float32), y=np.array(["cat", "dog", "cat", "ox"]))
    proc = run_cli("build", AD01, "--board", "qemu-m4", "--eval", labels, "-o", tmp_path / "o")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "labels 'y'", "text", "class indices")


@pytest.mark.parametrize("target", ["missing-folder/report.json", "a-folder"])
def test_bad_json_path_is_refused_before_validating(ad01_project, tmp_path, monkeypatch, target):
    from tinydeploy import device

    def no_device(*args, **kwargs):
        raise AssertionError("the device was started although --json cannot be written")

    monkeypatch.setattr(device, "running", no_device)
    (tmp_path / "a-folder").mkdir()
    result = invoke("validate", ad01_project, "--json", tmp_path / target)
    assert result.exit_code == 2
    one_error_line(result.stderr, "--json")


@pytest.mark.parametrize("where", ["under-a-file", "proc", "sys"])
def test_unwritable_output_folders_are_one_line(tmp_path, where):
    (tmp_path / "file").write_text("")
    out = {"under-a-file": tmp_path / "file" / "out", "proc": Path("/proc/tinydeploy-out"),
           "sys": Path("/sys/tinydeploy/out")}[where]
    result = invoke("build", AD01, "--board", "qemu-m4", "-o", out)
    assert result.exit_code == 2, result.output + result.stderr
    one_error_line(result.stderr, "-o")


def test_model_in_a_folder_without_permission(tmp_path, monkeypatch):
    """As root chmod 000 stops nothing, so the permission error is simulated where it arises."""
    locked = tmp_path / "locked"
    locked.mkdir()
    model = locked / "m.tflite"
    shutil.copyfile(AD01, model)
    real_stat = os.stat

    def stat_denied(path, *args, **kwargs):
        if str(path).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_denied)
    result = invoke("check", model, "--board", "qemu-m4")
    assert result.exit_code == 2
    one_error_line(result.stderr, "permission denied")


@pytest.mark.parametrize("device_file", ["/dev/zero", "/dev/null"])
def test_device_files_as_the_model_are_refused(device_file):
    proc = run_cli("check", device_file, "--board", "qemu-m4", timeout=30)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "device")


@pytest.mark.parametrize("content", ["not json {", "[1, 2]", '{"board": 3}',
                                     '{"board": "qemu-m4", "runtime": "native", "model": "../../x"}',
                                     '{"board": "qemu-m4", "runtime": "native", "model": "gone.tflite"}'])
def test_corrupt_manifests_are_one_line(ad01_project, tmp_path, content):
    project = tmp_path / "p"
    shutil.copytree(ad01_project, project)
    (project / "tinydeploy.json").write_text(content)
    for command in ("flash", "validate"):
        result = invoke(command, project)
        assert result.exit_code == 2, result.output + result.stderr
        one_error_line(result.stderr, "rebuild the project")


def _mutations(seed: int, count: int):
    """Deterministic byte mutations of the int8 digits-sized ad01 model outside its weights."""
    import random

    from tinydeploy import tflite

    base = AD01.read_bytes()
    spans = []
    for t in tflite.parse(base).main.tensors:
        if t.data is not None and t.data.nbytes > 8:
            at = base.find(t.data.tobytes())
            spans.append((at, at + t.data.nbytes))
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(base)
        for _ in range(rng.choice([1, 1, 2, 3])):
            while True:
                pos = rng.randrange(len(data))
                if not any(a <= pos < b for a, b in spans):
                    break
            data[pos] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        yield bytes(data)


def _tflm_outcome(data: bytes) -> str:
    """What TFLM does with the bytes, in a forked child: ok, rejected, or crash<signal>."""
    from tflite_micro.python.tflite_micro import runtime

    from tinydeploy import tflite

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        signal.alarm(20)
        try:
            ip = runtime.Interpreter.from_bytes(data, arena_size=tflite.host_arena_bytes(data))
            d = ip.get_input_details(0)
            ip.set_input(np.zeros(d["shape"], d["dtype"]), 0)
            ip.invoke()
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"crash{os.WTERMSIG(status)}"
    return "ok" if os.WEXITSTATUS(status) == 0 else "rejected"


@pytest.mark.slow
def test_mutated_models_that_would_crash_tflm_are_refused_by_the_reader():
    """200 seeded mutations of a real model: the reader refuses with a ModelError or accepts, never
    raises anything else; no accepted one crashes TFLM. (The reader before issue 9 accepted 3 of
    these that crash TFLM with SIGSEGV and 17 that TFLM rejects; now 0 and 2.)"""
    from tinydeploy import tflite
    from tinydeploy.analyze import analyze
    from tinydeploy.errors import ModelError

    outcomes = {"refused": 0, "ok": 0, "rejected": 0}
    for data in _mutations(seed=11, count=200):
        try:
            analyze(tflite.parse(data))
        except ModelError:
            outcomes["refused"] += 1
            continue
        outcome = _tflm_outcome(data)
        assert not outcome.startswith("crash"), "an accepted model crashed TFLM"
        outcomes[outcome] += 1
    assert outcomes["refused"] > 60 and outcomes["ok"] > 60
    assert outcomes["rejected"] <= 4, outcomes


def _damage(kind: str) -> bytes:
    """The image classifier with one structure damaged, located through the reader's own table
    access."""
    import struct

    from tinydeploy import tflite

    data = bytearray(IC.read_bytes())
    r = tflite._Reader(bytes(data))
    root = r.table(r.deref(0))
    graph = root.tables(2)[0]
    tensor = graph.tables(0)[1]
    op = next(o for o in graph.tables(3) if o._field(0, 4) is not None)  # opcode index stored

    def put(fmt, pos, value):
        struct.pack_into(fmt, data, pos, value)

    if kind == "misaligned root":
        put("<I", 0, r.u32(0) + 2)
    elif kind == "schema version":
        put("<I", root._field(0, 4), 2)
    elif kind == "buffer index":
        put("<I", tensor._field(2, 4), 9999)
    elif kind == "opcode index":
        put("<I", op._field(0, 4), 999)
    elif kind == "operator input":
        start, _ = r.vector(op._field(1, 4), 4)
        put("<i", start, -7)
    elif kind == "graph output":
        start, _ = r.vector(graph._field(2, 4), 4)
        put("<i", start, 10_000)
    elif kind == "negative dimension":
        start, _ = r.vector(tensor._field(0, 4), 4)
        put("<i", start, -3)
    elif kind == "vector count":
        put("<I", r.deref(tensor._field(0, 4)), 1 << 28)
    elif kind == "string terminator":
        start, count = r.vector(tensor._field(3, 4), 1)
        data[start + count] = ord("x")
    elif kind == "field outside its table":
        put("<H", tensor.vtable + 4 + 2 * 3, tensor.size + 8)
    elif kind == "scale":
        quant = tensor.table(4)
        start, _ = r.vector(quant._field(2, 4), 4)
        put("<f", start, float("nan"))
    elif kind == "tensor type":
        put("<b", tensor._field(1, 1), 77)
    return bytes(data)


@pytest.mark.parametrize("kind, words", [
    ("misaligned root", "misaligned"), ("schema version", "version is 2"),
    ("buffer index", "names buffer 9999"), ("opcode index", "opcode 999"),
    ("operator input", "tensor that does not exist"), ("graph output", "does not exist"),
    ("negative dimension", "impossible shape"), ("vector count", "past the end"),
    ("string terminator", "terminator"), ("field outside its table", "outside it"),
    ("scale", "non-finite scale"), ("tensor type", "unknown type code 77")])
def test_reader_refuses_each_kind_of_damage(kind, words):
    """Each was accepted before (or crashed the reader); TFLM trusts them blindly."""
    from tinydeploy import tflite
    from tinydeploy.errors import ModelError

    with pytest.raises(ModelError) as err:
        tflite.parse(_damage(kind))
    assert words in str(err.value)


# --------------------------------------------------------------------------- 9: lesser findings

@pytest.fixture(scope="session")
def big_activation_model(tmp_path_factory):
    """A full-int8 model whose activations need about 1.4 MiB (two 720 KB tensors live at once)."""
    from tinydeploy.loading import quiet, tensorflow

    tf = tensorflow()
    with quiet():
        inp = tf.keras.Input((300, 300, 8), batch_size=1)
        out = tf.keras.layers.Conv2D(8, 1)(inp)
        conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        rng = np.random.default_rng(0)
        conv.representative_dataset = lambda: (
            [rng.random((1, 300, 300, 8), np.float32)] for _ in range(4))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        data = conv.convert()
    path = tmp_path_factory.mktemp("big") / "big.tflite"
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_model_with_over_a_mebibyte_of_activations_is_measured(big_activation_model):
    """Before, the host arena was capped at max(10 x model, 1 MiB): 'TFLM cannot load'."""
    result = invoke("check", big_activation_model, "--board", "nano33ble", "--runtime", "tflm")
    assert "cannot load" not in result.stderr
    assert result.exit_code == 1, result.output + result.stderr  # 1.4 MB of RAM: does not fit
    assert "nano33ble: RAM does not fit" in result.stdout


def test_host_arena_covers_the_activations_and_refuses_absurd_ones():
    import struct

    from tinydeploy import tflite
    from tinydeploy.errors import ModelError

    data = IC.read_bytes()
    graph = tflite.parse(data).main
    activations = sum(t.nbytes for t in graph.tensors if not t.is_constant)
    assert tflite.host_arena_bytes(data) >= max(10 * len(data), 1 << 20, 4 * activations)
    # one activation of 320 MB (the reader's 2 GiB cap allows it): no microcontroller, refused
    r = tflite._Reader(data)
    tensors = r.table(r.deref(0)).tables(2)[0].tables(0)
    index = next(i for i, t in enumerate(graph.tensors)
                 if not t.is_constant and t.shape == (1, 32, 32, 16))
    start, _ = r.vector(tensors[index]._field(0, 4), 4)
    huge = bytearray(data)
    struct.pack_into("<i", huge, start, 20_000)
    assert tflite.parse(bytes(huge)).main.tensors[index].nbytes == 20_000 * 16_384
    with pytest.raises(ModelError, match="more than any microcontroller's RAM"):
        tflite.host_arena_bytes(bytes(huge))


def test_text_labels_in_validate_are_refused_before_the_device(ad01_project, tmp_path):
    samples = tmp_path / "s.npz"
    np.savez(samples, x=np.zeros((3, 640), np.float32), y=np.array(["a", "b", "c"]))
    proc = run_cli("validate", ad01_project, "--samples", samples)
    assert proc.returncode == 2
    one_error_line(proc.stderr, "text", "labels")
    assert "starting" not in proc.stderr


def test_validate_api_refuses_text_labels_before_the_handshake():
    from tinydeploy.errors import InputError
    from tinydeploy.validate import validate

    class NoDevice:
        def hello(self, **kwargs):
            raise AssertionError("the device was contacted")

    with pytest.raises(InputError, match="text"):
        validate(NoDevice(), AD01.read_bytes(), np.zeros((2, 640), np.float32),
                 np.array(["x", "y"]))


@pytest.mark.parametrize("what", ["model", "calib"])
def test_a_fifo_never_blocks(tmp_path, what):
    fifo = tmp_path / ("model.tflite" if what == "model" else "calib.npz")
    os.mkfifo(fifo)
    args = (["check", fifo, "--board", "qemu-m4"] if what == "model" else
            ["build", AD01, "--board", "qemu-m4", "--eval", fifo, "-o", tmp_path / "o"])
    started = time.monotonic()
    proc = run_cli(*args, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2
    one_error_line(proc.stderr, "FIFO")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_output_folders_follow_the_umask(tmp_path, umask, mode):
    out = tmp_path / "deep" / "proj"
    proc = run_cli("build", AD01, "--board", "qemu-m4", "-o", out, umask=umask)
    assert proc.returncode == 0, proc.stderr
    for folder in (out, out / "src", tmp_path / "deep"):
        assert stat.S_IMODE(folder.stat().st_mode) == mode, folder


def test_click_usage_errors_are_one_line_too():
    proc = run_cli("build", AD01, "--board", "qemu-m4", "--runtime", "fast")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "--runtime", "tinydeploy build --help")
    assert "Usage:" not in proc.stderr
