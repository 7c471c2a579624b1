"""Finding the TFLM library (no real library needed: fake folders in the Arduino layout)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tinydeploy import tflm_lib
from tinydeploy.errors import InputError, ToolMissingError

from paths import MLPERF


def fake_library(root, name="Arduino_TensorFlowLite"):
    marker = root / "src" / "tensorflow" / "lite" / "micro" / "micro_interpreter.h"
    marker.parent.mkdir(parents=True)
    marker.write_text("// fake\n")
    (root / "library.properties").write_text(f"name={name}\nversion=9.9\n")
    return root


@pytest.fixture(autouse=True)
def no_library_in_the_environment(monkeypatch):
    monkeypatch.delenv(tflm_lib.LIB_ENV, raising=False)


def test_first_found_wins_option_then_environment_then_libdeps_then_manifest(tmp_path, monkeypatch):
    option, env, recorded = (fake_library(tmp_path / n) for n in ("option", "env", "recorded"))
    project = tmp_path / "project"
    libdeps = fake_library(project / ".pio" / "libdeps" / "nano33ble" / tflm_lib.PIO_LIB_NAME)
    where = {"project_dir": project, "env_name": "nano33ble", "recorded": str(recorded)}

    assert tflm_lib.find_library(None, **where).root == libdeps.resolve()
    assert tflm_lib.find_library(None, **where).origin == "libdeps"
    monkeypatch.setenv(tflm_lib.LIB_ENV, str(env))
    assert tflm_lib.find_library(None, **where).root == env.resolve()
    assert tflm_lib.find_library(option, **where).root == option.resolve()
    monkeypatch.delenv(tflm_lib.LIB_ENV)
    assert tflm_lib.find_library(None, project_dir=tmp_path / "none",
                                 recorded=str(recorded)).origin == "manifest"
    assert tflm_lib.find_library(None, project_dir=tmp_path / "none") is None


def test_the_src_folder_itself_is_accepted(tmp_path):
    lib = fake_library(tmp_path / "lib")
    assert tflm_lib.library_at(lib / "src", "--tflm-lib").root == lib.resolve()
    assert tflm_lib.library_at(lib, "--tflm-lib").name == "Arduino_TensorFlowLite"


def test_a_folder_that_is_not_a_library_is_one_clear_line(tmp_path):
    with pytest.raises(InputError) as excinfo:
        tflm_lib.library_at(tmp_path, "--tflm-lib")
    assert "is not a TFLM library" in str(excinfo.value) and "\n" not in str(excinfo.value)
    tree = tmp_path / "tflite-micro"
    (tree / "tensorflow" / "lite" / "micro").mkdir(parents=True)
    with pytest.raises(InputError, match="not an Arduino-layout library"):
        tflm_lib.library_at(tree, "--tflm-lib")


def test_no_library_says_where_to_put_it():
    with pytest.raises(ToolMissingError) as excinfo:
        tflm_lib.require_library(None)
    message = str(excinfo.value)
    assert "--tflm-lib" in message and tflm_lib.LIB_ENV in message and "\n" not in message
    assert excinfo.value.exit_code == 2


def test_fingerprint_follows_the_content_not_the_folder(tmp_path):
    a, b = fake_library(tmp_path / "a"), fake_library(tmp_path / "b")
    la, lb = tflm_lib.library_at(a, "x"), tflm_lib.library_at(b, "x")
    assert la.fingerprint() == lb.fingerprint()
    (b / "src" / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").write_text("// other\n")
    assert tflm_lib.library_at(b, "x").fingerprint() != la.fingerprint()


def test_deploy_tflm_on_an_emulated_board_without_a_library_fails_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != tflm_lib.LIB_ENV}
    proc = subprocess.run([sys.executable, "-m", "tinydeploy", "deploy",
                           str(MLPERF / "ad01_int8.tflite"), "--runtime", "tflm", "-o",
                           str(tmp_path / "ad")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--tflm-lib" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "loading" not in proc.stderr  # refused before work
    assert not (tmp_path / "ad").exists()


def fake_kernels(root):
    """A fake library with two kernels, a kernel helper and the resolver header that names them."""
    lib = fake_library(root)
    src = lib / "src"
    (src / "tensorflow/lite/micro/micro_mutable_op_resolver.h").write_text(
        "  TfLiteStatus AddConv2D(\n      const TfLiteRegistration& registration = Register_CONV_2D()) {\n"
        "    return AddBuiltin(BuiltinOperator_CONV_2D, registration, ParseConv2D);\n  }\n"
        "  TfLiteStatus AddRelu() {\n    return AddBuiltin(BuiltinOperator_RELU, tflite::Register_RELU(), ParseRelu);\n  }\n")
    kernels = src / "tensorflow/lite/micro/kernels"
    kernels.mkdir(parents=True)
    (kernels / "conv.cpp").write_text("TfLiteRegistration Register_CONV_2D() { return {}; }\n")
    (kernels / "activations.cpp").write_text("TfLiteRegistration Register_RELU() { return {}; }\n")
    (kernels / "conv_common.cpp").write_text("int helper() { return 1; }\n")
    (src / "tensorflow/lite/micro/micro_interpreter.cpp").write_text("int core() { return 0; }\n")
    return tflm_lib.library_at(lib, "test")


def test_only_the_kernels_of_the_models_ops_are_compiled(tmp_path):
    lib = fake_kernels(tmp_path / "lib")
    names = sorted(p.name for p in tflm_lib.kernel_sources(lib, ["CONV_2D"]))
    assert names == ["conv.cpp", "conv_common.cpp", "micro_interpreter.cpp"]
    assert tflm_lib.kernel_sources(lib, ["MEAN"]) is None  # a kernel it cannot find: everything


def test_a_link_that_misses_a_symbol_is_retried_with_the_whole_library_with_a_fake_compile(monkeypatch):
    from tinydeploy import tflm_firmware
    from tinydeploy.errors import BuildError

    calls = []

    def fake_compile(lib, target, progress=None, jobs=None, ops=None):
        calls.append(ops)
        return tflm_lib.CompiledLibrary(lib, target, None, 0.0, complete=ops is None)

    def link(compiled):
        if not compiled.complete:
            err = BuildError("arm-none-eabi-gcc failed", "see above")
            err.stderr = "ld: kernel.o: undefined reference to `tflite::Helper()'"
            raise err
        return "linked"

    monkeypatch.setattr(tflm_lib, "compile_library", fake_compile)
    assert tflm_firmware.link_with_library(None, None, ["CONV_2D"], link) == "linked"
    assert calls == [["CONV_2D"], None]
