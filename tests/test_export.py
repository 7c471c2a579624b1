"""`tinydeploy export`: the model as a library dropped into firmware the user already has.

Real parts throughout: the exports of digits and of the MLPerf Tiny IC model are dropped into a
PlatformIO project whose own main.cpp (written here) calls the exported API; PlatformIO checks the
project (`pio project config`) and the library manifests (its own manifest parser and schema); the
whole project compiles and links with -Wall -Wextra -Werror against the stub Arduino/TFLM headers
as CI compiles `build` projects; the same library folder is compiled with arm-none-eabi-gcc against
the real TFLM library (the pinned Arduino_TensorFlowLite, when the machine has it) and run on the
emulated Cortex-M4 (QEMU mps2-an386), where every output must equal the same library's host build
bit for bit; the native export runs there too, and on this host, against TFLM's reference kernels.
Re-exports are checked on real folders: a retrained digits model updates the export in place and
leaves the user's files byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from paths import EXAMPLES, MLPERF, REPO, tflm_lib_dir
from tinydeploy import export as ex
from tinydeploy.cli import cli

STUBS = REPO / "tests" / "stubs"
IC = MLPERF / "pretrainedResnet_quant.tflite"
WERROR = ["-Wall", "-Wextra", "-Werror"]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
needs_qemu = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")),
    reason="needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)")


def run_cli(*args, cwd: Path | None = None):
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------- shared exports

@pytest.fixture(scope="module")
def library():
    """The pinned TFLM library when the machine has it (its arena is then measured), else None."""
    from tinydeploy.tflm_lib import library_at

    path = tflm_lib_dir()
    return library_at(path, "--tflm-lib") if path else None


@pytest.fixture(scope="module")
def digits_path(converted_digits, tmp_path_factory) -> Path:
    """The digits model in int8 under its own name (the export's library is named after it)."""
    path = tmp_path_factory.mktemp("model") / "digits.tflite"
    path.write_bytes(converted_digits)
    return path


@pytest.fixture(scope="module")
def prepared(digits_path, library):
    from tinydeploy.build import prepare

    return {"digits": prepare(digits_path, tflm_library=library),
            "ic": prepare(IC, tflm_library=library)}


@pytest.fixture(scope="module")
def exports(prepared, tmp_path_factory):
    """(model, board, runtime, format) -> the export's path, each written once for the module."""
    root = tmp_path_factory.mktemp("exports")
    made = {}
    for model, board, runtime, fmt in [("digits", "nano33ble", "tflm", "pio-lib"),
                                       ("ic", "nano33ble", "tflm", "pio-lib"),
                                       ("digits", "nano33ble", "native", "pio-lib"),
                                       ("ic", "nano33ble", "native", "pio-lib"),
                                       ("ic", "esp32", "tflm", "pio-lib"),
                                       ("digits", "nano33ble", "tflm", "arduino-zip"),
                                       ("digits", "nano33ble", "native", "arduino-zip"),
                                       ("digits", "esp32", "tflm", "arduino-zip"),
                                       ("ic", "qemu-m4", "native", "folder")]:
        out = root / f"{model}-{board}-{runtime}-{fmt}" / ("lib.zip" if fmt == "arduino-zip" else "lib")
        result = ex.export(prepared[model], board, runtime=runtime, fmt=fmt, out=out)
        assert result.written and result.check.fits
        made[model, board, runtime, fmt] = out
    return made


def unzip(path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(dest)
        (top,) = {name.split("/")[0] for name in archive.namelist()}
    return dest / top


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the user's project

USER_MAIN = r"""// The user's own firmware: it reads its "sensor", runs the exported model, logs the result.
#include <Arduino.h>
#include <stdio.h>
#include <string.h>

#include <tinydeploy_model.h>

int app_status = -100;   // read by the test harness
size_t app_outputs = 0;

static void log_line(const char *text) {
  for (size_t left = strlen(text), n; left > 0; text += n, left -= n) {
    n = Serial.write(reinterpret_cast<const uint8_t *>(text), left);
    if (n == 0) return;
  }
}

void setup() {
  Serial.begin(115200);
  app_status = td_model_init();
  if (app_status != 0) {
    log_line("model init failed\n");
    return;
  }
  int8_t *in = td_model_input(0);
  for (size_t k = 0; k < td_model_input_size(0); k++) {
    in[k] = static_cast<int8_t>(k % 7);  // the sensor
  }
  app_status = td_model_invoke();
  app_outputs = td_model_output_size(0);
  char line[8];
  log_line(TD_MODEL_RUNTIME ":");
  for (size_t k = 0; k < app_outputs; k++) {
    snprintf(line, sizeof line, " %d", td_model_output(0)[k]);
    log_line(line);
  }
  log_line("\n");
}

void loop() {
}
"""

HARNESS = r"""// Runs the project's setup() once, as the Arduino core would, and reports what it saw: the
// app's status, its output count, then what it wrote to (the stub) Serial.
#include <Arduino.h>

#include <cstdio>

void setup();
extern int app_status;
extern size_t app_outputs;

int main() {
    setup();
    std::printf("status %d outputs %u\n", app_status, static_cast<unsigned>(app_outputs));
    std::fwrite(stub::tx, 1, stub::tx_len, stdout);
    return 0;
}
"""

SKETCH_HARNESS = r"""// Runs an Arduino sketch's setup() once and prints what it wrote to (the stub) Serial.
#include <Arduino.h>

#include <cstdio>

void setup();

int main() {
    setup();
    std::fwrite(stub::tx, 1, stub::tx_len, stdout);
    return stub::begin_calls == 1 ? 0 : 1;
}
"""


def user_project(tmp: Path, export_dir: Path, board_id: str) -> Path:
    """A PlatformIO project of the user's: its platformio.ini and main.cpp, the export under lib/."""
    from tinydeploy.boards import load_board

    pio = load_board(board_id).platformio
    project = tmp / "firmware"
    (project / "src").mkdir(parents=True)
    (project / "platformio.ini").write_text(
        f"; the user's project\n[env:{board_id}]\nplatform = {pio.platform}\nboard = {pio.board}\n"
        f"framework = {pio.framework}\nmonitor_speed = 115200\n")
    (project / "src" / "main.cpp").write_text(USER_MAIN)
    shutil.copytree(export_dir, project / "lib" / "model")
    return project


def pio_config(project: Path) -> dict:
    if shutil.which("pio") is None:
        pytest.skip("PlatformIO (pio) is not installed: pip install 'tinydeploy[boards]'")
    env = dict(os.environ, PLATFORMIO_SETTING_ENABLE_TELEMETRY="No")
    run = subprocess.run(["pio", "project", "config", "--project-dir", str(project), "--json-output"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return {name: dict(options) for name, options in json.loads(run.stdout)}


def compile_against_stubs(project: Path, work: Path, extra: list[Path] = (),
                          harness: str = HARNESS) -> str:
    """Every C/C++ file of the project (src/ and each lib/*/src/, recursively) compiled as CI
    compiles `build` projects (C11 / C++17, -Wall -Wextra -Werror) against the stub Arduino and
    TFLM headers, linked with the stub Arduino core and HARNESS, and run. Returns its output."""
    for tool in ("gcc", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    work.mkdir(parents=True, exist_ok=True)
    (work / "harness.cpp").write_text(harness)
    lib_src = sorted(project.glob("lib/*/src"))
    includes = [f"-I{d}" for d in (*lib_src, STUBS / "tflm", STUBS / "arduino")]
    sources = sorted(p for d in (project / "src", *lib_src) for p in d.rglob("*")
                     if p.suffix in (".c", ".cpp"))
    sources += [STUBS / "arduino" / "arduino_stub.cpp", work / "harness.cpp", *extra]
    objects = []
    for i, source in enumerate(sources):
        obj = work / f"{i}-{source.stem}.o"
        compiler = ["gcc", "-std=c11"] if source.suffix == ".c" else ["g++", "-std=c++17"]
        if source.suffix == ".ino":
            compiler = ["g++", "-std=c++17", "-x", "c++", "-include", "Arduino.h"]
        run = subprocess.run([*compiler, *WERROR, *includes, "-c", str(source), "-o", str(obj)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{source.name}:\n{run.stderr}"
        objects.append(str(obj))
    link = subprocess.run(["g++", *objects, "-o", str(work / "firmware")], capture_output=True,
                          text=True, timeout=120)
    assert link.returncode == 0, link.stderr
    run = subprocess.run([str(work / "firmware")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


# --------------------------------------------------------------------------- the library formats

def test_export_folder_holds_the_api_the_model_and_its_manifest(exports, prepared):
    folder = exports["digits", "nano33ble", "tflm", "pio-lib"]
    manifest = json.loads((folder / ex.MANIFEST).read_text())
    on_disk = {rel for rel in snapshot(folder) if rel != ex.MANIFEST}
    assert set(manifest["files"]) == on_disk
    assert {"library.json", "README.md", "model.tflite", "src/tinydeploy_model.h",
            "src/tinydeploy/model_data.cpp", "src/tinydeploy/op_resolver.h",
            "src/tinydeploy/model_settings.h", "src/tinydeploy/td_runtime_tflm.cpp",
            "examples/Inference/Inference.ino"} <= on_disk
    p = prepared["digits"]
    assert (folder / "model.tflite").read_bytes() == p.model_bytes
    assert manifest["model"]["sha256"] == hashlib.sha256(p.model_bytes).hexdigest()
    assert manifest["ops"] == p.analysis.distinct_ops and manifest["fits"] is True
    settings = (folder / "src/tinydeploy/model_settings.h").read_text()
    assert f"#define TD_ARENA_BYTES {manifest['arena_bytes']}\n" in settings
    assert "tinydeploy build" not in settings  # the rendered files say how to regenerate: export
    header = (folder / "src/tinydeploy_model.h").read_text()
    assert f'#define TD_MODEL_SHA256 "{manifest["model"]["sha256"]}"' in header
    assert manifest["verdict"] in header.replace("\n * ", " ")
    readme = (folder / "README.md").read_text()
    assert manifest["verdict"] in readme and "| RAM | arena |" in readme


def test_both_runtimes_export_the_same_api(exports):
    """The user's code does not change with the runtime: the same header, the same functions."""
    tflm = exports["ic", "nano33ble", "tflm", "pio-lib"]
    native = exports["ic", "nano33ble", "native", "pio-lib"]
    strip = lambda text: [ln for ln in text.splitlines() if "tflm" not in ln and "native" not in ln
                          and "arena" not in ln and "verdict" not in ln]
    assert (strip((tflm / "src/tinydeploy_model.h").read_text())
            == strip((native / "src/tinydeploy_model.h").read_text()))
    assert not (native / "src/tinydeploy/td_runtime_tflm.cpp").exists()
    assert not (native / "src/tinydeploy/model_data.cpp").exists()  # no flatbuffer in flash
    assert (native / "src/tinydeploy/td_model.c").is_file()


def _pio_manifest(path: Path) -> dict:
    pytest.importorskip("platformio", reason="PlatformIO is not installed: pip install 'tinydeploy[boards]'")
    from platformio.package.manifest.parser import ManifestParserFactory
    from platformio.package.manifest.schema import ManifestSchema

    parser = ManifestParserFactory.new(path.read_text(), path.name)
    return ManifestSchema().load_manifest(parser.as_dict())   # raises on an invalid manifest


@pytest.mark.parametrize("model, board, runtime", [("digits", "nano33ble", "tflm"),
                                                    ("ic", "esp32", "tflm"),
                                                    ("ic", "nano33ble", "native")])
def test_library_json_is_valid_and_pins_the_boards_tflm(exports, model, board, runtime):
    from tinydeploy.boards import load_board

    profile = load_board(board)
    data = _pio_manifest(exports[model, board, runtime, "pio-lib"] / "library.json")
    assert data["name"] == f"{'digits' if model == 'digits' else 'pretrainedResnet_quant'}_model"
    assert data["version"] == "1.0.0" and data["headers"] == ["tinydeploy_model.h"]
    if runtime == "tflm":
        assert data["frameworks"] == [profile.platformio.framework]
        assert data["platforms"] == [profile.platformio.platform]
        (dep,) = data["dependencies"]
        pinned = profile.platformio.lib_deps[0]
        if "://" in pinned:   # the Arm boards: a repository at a commit
            assert dep == {"name": "Arduino_TensorFlowLite", "version": pinned}
        else:                 # the ESP32s: owner/name@version from the registry
            owner_name, version = pinned.split("@")
            assert (f"{dep['owner']}/{dep['name']}", dep["version"]) == (owner_name, version)
    else:
        assert data["frameworks"] == ["*"] and "dependencies" not in data


def test_a_custom_platform_url_becomes_its_platform_name():
    assert ex._pio_platform("https://github.com/nigelb/platform-apollo3blue.git") == "apollo3blue"
    assert ex._pio_platform("nordicnrf52") == "nordicnrf52"


@pytest.mark.parametrize("model, board, runtime", [("digits", "nano33ble", "tflm"),
                                                    ("ic", "nano33ble", "tflm"),
                                                    ("digits", "nano33ble", "native"),
                                                    ("ic", "nano33ble", "native"),
                                                    ("ic", "esp32", "tflm")])
def test_export_in_a_platformio_project_passes_pio_config_and_links_against_stubs(
        exports, prepared, tmp_path, model, board, runtime):
    project = user_project(tmp_path, exports[model, board, runtime, "pio-lib"], board)
    if shutil.which("pio"):   # without PlatformIO, still compile (pio_config says why it skips)
        sections = pio_config(project)
        assert sections[f"env:{board}"]["framework"] == ["arduino"]
        assert sections[f"env:{board}"]["platform"] == ex._pio_platform(sections[f"env:{board}"]["platform"])
    lines = compile_against_stubs(project, tmp_path / "objects").splitlines()
    if runtime == "tflm":
        # The stub TFLM takes the first 4 bytes of the model for its schema version; in a real
        # flatbuffer they are the root table's offset, so the adapter refuses the exported model
        # with its schema-mismatch code: the API is reached through the real model array, and the
        # user's error path runs. (The model itself runs with the real library on the M4 below.)
        root_offset = int.from_bytes(prepared[model].model_bytes[:4], "little")
        assert root_offset != 3
        assert lines == ["status -2 outputs 0", "model init failed"]
    else:
        # the native runtime needs no stub: the user's main.cpp really ran the model on this host
        p = prepared[model]
        x = (np.arange(p.analysis.inputs[0].size) % 7).astype(np.int8)
        assert lines == [f"status 0 outputs {p.analysis.outputs[0].size}",
                         "native: " + " ".join(map(str, reference_outputs(p, x[None])[0]))]


def test_arduino_zip_is_one_library_folder_the_ide_accepts(exports, tmp_path, prepared):
    top = unzip(exports["digits", "nano33ble", "tflm", "arduino-zip"], tmp_path / "x")
    assert top.name == "digits_model"
    data = _pio_manifest(top / "library.properties")    # PlatformIO reads Arduino libraries too
    assert data["name"] == "digits_model" and data["headers"] == ["tinydeploy_model.h"]
    props = dict(line.split("=", 1) for line in (top / "library.properties").read_text().splitlines())
    assert props["architectures"] == "*" and "depends" not in props
    # the Arm boards' TFLM is a repository commit the IDE cannot install: the README says how
    assert "07d1cca59a20508b9ab1e69e0cc76a3ace815eaa" in (top / "README.md").read_text()
    assert not list(top.rglob("*.cc"))   # the IDEs before 2023 build .c/.cpp only
    esp = unzip(exports["digits", "esp32", "tflm", "arduino-zip"], tmp_path / "y")
    assert "depends=TensorFlowLite_ESP32 (=1.0.0)\n" in (esp / "library.properties").read_text()


@pytest.mark.parametrize("runtime", ["tflm", "native"])
def test_arduino_zip_example_sketch_compiles_against_stubs(exports, prepared, tmp_path, runtime):
    """The zip's example sketch, built with the library as the IDE builds it (C/C++ of src/,
    the .ino as C++ with Arduino.h included first) against the stub headers, and run."""
    top = unzip(exports["digits", "nano33ble", runtime, "arduino-zip"], tmp_path / "x")
    project = tmp_path / "sketch"
    (project / "src").mkdir(parents=True)
    shutil.copytree(top, project / "lib" / top.name)
    sketch = top / "examples" / "Inference" / "Inference.ino"
    text = compile_against_stubs(project, tmp_path / "objects", [sketch], SKETCH_HARNESS)
    if runtime == "tflm":   # the stub TFLM refuses a real flatbuffer (see the PlatformIO test)
        assert text == "td_model_init failed: -2\n"
        return
    # native: the sketch ran the model on its neutral input (the zero point everywhere)
    p = prepared["digits"]
    spec, out = p.analysis.inputs[0], p.analysis.outputs[0]
    expected = reference_outputs(p, np.full((1, spec.size), spec.zero_point, np.int8))[0]
    arena = json.loads((top / ex.MANIFEST).read_text())["arena_bytes"]
    printed = f"digits (native runtime, arena {arena} B):\r\n" + "".join(
        f"  output[{k}] = {q} (real value "
        f"{int(np.float32(q - out.zero_point) * np.float32(out.scale) * np.float32(1000))} thousandths)\r\n"
        for k, q in enumerate(expected))
    # the stub Serial keeps the first 256 bytes; the harness's stdout reads \r\n as \n
    assert text == printed[:256].replace("\r\n", "\n").replace("\r", "\n")


def test_the_same_export_twice_gives_the_same_zip(prepared, tmp_path):
    a = ex.export(prepared["digits"], "nano33ble", fmt="arduino-zip", out=tmp_path / "a.zip")
    b = ex.export(prepared["digits"], "nano33ble", fmt="arduino-zip", out=tmp_path / "b.zip")
    assert a.written and b.written
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_folder_export_readme_names_the_include_path_and_sources(exports):
    folder = exports["ic", "qemu-m4", "native", "folder"]
    readme = (folder / "README.md").read_text()
    assert not (folder / "library.json").exists() and not (folder / "examples").exists()
    sources = sorted(p.name for p in (folder / "src/tinydeploy").iterdir() if p.suffix == ".c")
    assert all(f"`{name}`" in readme for name in sources)
    for build_system in ("CMake", "Make", "Zephyr", "ESP-IDF"):
        assert build_system in readme
    assert "include path: `src`" in readme and "TD_NO_DSP" in readme


# --------------------------------------------------------------------------- native: -Werror, host

def _native_sources(folder: Path) -> list[Path]:
    return sorted((folder / "src/tinydeploy").glob("*.c"))


SAMPLE_MAIN = r"""/* The test's firmware: runs every sample through the exported API, prints each output. */
#include <stdio.h>
#include <string.h>

#include <tinydeploy_model.h>

#include "samples.h"

#ifdef TD_ON_QEMU
#include "td_board.h"
#define PUTS td_semihost_puts
#else
#define PUTS(s) fputs((s), stdout)
#endif

int main(void) {
    char text[16];
    int status = td_model_init();
    if (status != 0) {
        snprintf(text, sizeof text, "init %d\n", status);
        PUTS(text);
        return 1;
    }
    for (int n = 0; n < TD_SAMPLES; n++) {
        memcpy(td_model_input(0), td_samples[n], td_model_input_size(0));
        if (td_model_invoke() != 0) {
            PUTS("invoke failed\n");
            return 2;
        }
        const int8_t *out = td_model_output(0);
        PUTS("out");
        for (size_t k = 0; k < td_model_output_size(0); k++) {
            snprintf(text, sizeof text, " %d", out[k]);
            PUTS(text);
        }
        PUTS("\n");
    }
#ifdef TD_ON_QEMU
    td_semihost_exit(0);
#endif
    return 0;
}
"""


def samples_for(name: str, p, n: int) -> np.ndarray:
    """int8 samples for the model: digits' own held-out digits, random images for IC."""
    from tinydeploy.data import load_samples
    from tinydeploy.validate import quantize_input

    spec = p.analysis.inputs[0]
    if name == "digits":
        x = load_samples(EXAMPLES / "digits" / "eval.npz", input_shape=(8, 8, 1), limit=n).x
        return quantize_input(x, spec).reshape(n, -1)
    return np.random.default_rng(7).integers(-128, 128, (n, spec.size), dtype=np.int8)


def write_samples(folder: Path, x: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ",\n".join("  {" + ", ".join(map(str, row)) + "}" for row in x)
    (folder / "samples.h").write_text(
        f"#include <stdint.h>\n#define TD_SAMPLES {len(x)}\n"
        f"static const int8_t td_samples[TD_SAMPLES][{x.shape[1]}] = {{\n{rows}\n}};\n")
    (folder / "main.c").write_text(SAMPLE_MAIN)


def parse_outputs(text: str) -> list[list[int]]:
    return [list(map(int, line.split()[1:])) for line in text.splitlines() if line.startswith("out")]


def reference_outputs(p, x: np.ndarray, lib=None) -> list[list[int]]:
    """What the device must print: TFLM's reference kernels (the wheel) for the native runtime,
    the device's own TFLM library built for this host for the tflm runtime."""
    shape = p.analysis.inputs[0].shape
    if lib is None:
        from tinydeploy.reference import Reference

        ref = Reference(p.model_bytes)
    else:
        from tinydeploy.tflm_reference import LibraryReference

        ref = LibraryReference(p.model_bytes, lib)
    return [ref.invoke([row.reshape(shape)])[0].ravel().astype(int).tolist() for row in x]


@pytest.mark.parametrize("compiler, flags", [
    ("gcc", ["-std=c99", "-pedantic"]),
    ("arm-none-eabi-gcc", ["-std=c99", *M4_FLAGS]),             # DSP path
    ("arm-none-eabi-gcc", ["-std=c99", "-mcpu=cortex-m0plus", "-mthumb"]),  # portable path
], ids=["gcc", "arm-m4", "arm-m0plus"])
@pytest.mark.parametrize("model", ["digits", "ic"])
def test_native_export_compiles_with_wall_wextra_werror(exports, tmp_path, compiler, flags, model):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    folder = exports[model, "nano33ble", "native", "pio-lib"]
    write_samples(tmp_path, np.zeros((1, 4), np.int8))
    for source in [*_native_sources(folder), tmp_path / "main.c"]:
        run = subprocess.run([compiler, *flags, *WERROR, f"-I{folder / 'src'}", f"-I{tmp_path}",
                              "-c", str(source), "-o", str(tmp_path / (source.stem + ".o"))],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{source.name}:\n{run.stderr}"


@pytest.mark.parametrize("model, n", [("digits", 60), ("ic", 8)])
def test_native_export_runs_bit_exact_on_this_host(exports, prepared, tmp_path, model, n):
    folder = exports[model, "nano33ble", "native", "pio-lib"]
    x = samples_for(model, prepared[model], n)
    write_samples(tmp_path, x)
    exe = tmp_path / "run"
    build = subprocess.run(["gcc", "-std=c99", "-O2", *WERROR, f"-I{folder / 'src'}", f"-I{tmp_path}",
                            *map(str, _native_sources(folder)), str(tmp_path / "main.c"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout
    assert parse_outputs(run.stdout) == reference_outputs(prepared[model], x)


# --------------------------------------------------------------------------- the emulated M4

def run_on_m4(export_dir: Path, work: Path, lib=None) -> str:
    """The export's sources (and, for tflm, the real TFLM library compiled for the Cortex-M4 as
    PlatformIO compiles it) linked with the test's main.c for qemu-m4, run in QEMU; returns what
    the firmware printed through semihosting."""
    from tinydeploy import baremetal, tflm_firmware
    from tinydeploy.boards import load_board
    from tinydeploy.resources import firmware_dir
    from tinydeploy.runners.qemu import QEMU

    board = load_board("qemu-m4")
    src = export_dir / "src"
    generated = src / "tinydeploy"

    def link(compiled):
        cxx = None if compiled is None else baremetal.CxxPart(
            (*sorted(generated.glob("*.cpp")), firmware_dir() / "baremetal" / baremetal.TFLM_PORT),
            compiled.target.cxx_flags, (lib.src, src), (compiled.archive,))
        return baremetal.build_firmware(board, sorted(generated.glob("*.c")), work / "build",
                                        [src, work], ["TD_ON_QEMU"], cxx=cxx,
                                        main=str(work / "main.c"), protocol=False)

    if lib is None:
        firmware = link(None)
    else:
        from tinydeploy.analyze import analyze

        ops = analyze((export_dir / "model.tflite").read_bytes()).distinct_ops
        firmware = tflm_firmware.link_with_library(lib, tflm_firmware.core_target(board), ops, link)
    run = subprocess.run([QEMU, "-M", board.qemu.machine, "-nographic", "-monitor", "none",
                          "-serial", "null", "-semihosting-config", "enable=on,target=native",
                          "-kernel", str(firmware.elf)], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("model, n", [("digits", 40), ("ic", 6)])
def test_tflm_export_runs_bit_exact_on_the_emulated_m4_with_the_real_library(
        exports, prepared, tmp_path, tflm_lib, model, n):
    """The very library folder the PlatformIO test compiled against the stubs, built here with the
    pinned TFLM library for the Cortex-M4 (the nano33ble's core): its outputs equal the same
    library's host build on every sample, with the arena the export reserves."""
    from tinydeploy.tflm_lib import library_at

    lib = library_at(tflm_lib, "--tflm-lib")
    project = user_project(tmp_path, exports[model, "nano33ble", "tflm", "pio-lib"], "nano33ble")
    x = samples_for(model, prepared[model], n)
    write_samples(tmp_path / "m4", x)
    printed = run_on_m4(project / "lib" / "model", tmp_path / "m4", lib)
    assert "init" not in printed, printed
    assert parse_outputs(printed) == reference_outputs(prepared[model], x, lib)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("model, n", [("digits", 40), ("ic", 6)])
def test_native_export_runs_bit_exact_on_the_emulated_m4(exports, prepared, tmp_path, model, n):
    x = samples_for(model, prepared[model], n)
    write_samples(tmp_path / "m4", x)
    printed = run_on_m4(exports[model, "nano33ble", "native", "pio-lib"], tmp_path / "m4")
    assert parse_outputs(printed) == reference_outputs(prepared[model], x)


# --------------------------------------------------------------------------- re-export

@pytest.fixture(scope="module")
def retrained_digits(digits_model, tmp_path_factory) -> Path:
    """The digits model retrained (same architecture, three more epochs on new data: the
    held-out digits), quantized to int8 like the original: what a user re-exports."""
    import keras

    from tinydeploy.data import load_samples
    from tinydeploy.loading import load_model
    from tinydeploy.quantize import quantize

    data = np.load(EXAMPLES / "digits" / "eval.npz")
    keras.utils.set_random_seed(1)
    model = keras.models.clone_model(digits_model.keras_model)
    model.set_weights(digits_model.keras_model.get_weights())
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(data["x"], data["y"], epochs=3, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("retrained")
    model.save(folder / "digits.keras")
    calib = load_samples(EXAMPLES / "digits" / "calib.npz", input_shape=(8, 8, 1))
    path = folder / "digits.tflite"
    path.write_bytes(quantize(load_model(folder / "digits.keras"), calib).tflite)
    return path


@pytest.mark.slow
def test_reexporting_a_retrained_model_updates_in_place_and_leaves_the_users_files(
        digits_path, retrained_digits, prepared, tmp_path):
    from tinydeploy.build import prepare

    project = tmp_path / "firmware"
    lib = project / "lib" / "digits"
    first = run_cli("export", digits_path, "--board", "nano33ble", "--runtime", "native", "-o", lib)
    assert first.exit_code == 0, first.output + first.stderr
    assert "wrote      " in first.output and "updated" not in first.output
    (project / "src").mkdir()
    (project / "src" / "main.cpp").write_text(USER_MAIN)
    (project / "platformio.ini").write_text("[env:nano33ble]\nplatform = nordicnrf52\n"
                                           "board = nano33ble\nframework = arduino\n")
    # the user's own files: beside the export, and inside its folders
    (lib / "NOTES.md").write_text("calibrated on the bench, 2024-05\n")
    (lib / "src" / "sensor.cpp").write_text("// the user's sensor code\nint sensor_gain = 3;\n")
    (lib / "src" / "tinydeploy" / "local_tweaks.h").write_text("#define MY_TWEAK 1\n")
    users = ["NOTES.md", "src/sensor.cpp", "src/tinydeploy/local_tweaks.h"]
    before = {rel: ((lib / rel).read_bytes(), (lib / rel).stat().st_mtime_ns) for rel in users}
    old_manifest = json.loads((lib / ex.MANIFEST).read_text())
    probe = (np.arange(prepared["digits"].analysis.inputs[0].size) % 7).astype(np.int8)[None]
    old_ref = reference_outputs(prepared["digits"], probe)[0]
    ran = compile_against_stubs(project, tmp_path / "o1").splitlines()
    assert ran[1] == "native: " + " ".join(map(str, old_ref))

    again = run_cli("export", retrained_digits, "--board", "nano33ble", "--runtime", "native",
                    "-o", lib)
    assert again.exit_code == 0, again.output + again.stderr
    new = prepare(retrained_digits)
    new_sha = hashlib.sha256(new.model_bytes).hexdigest()
    manifest = json.loads((lib / ex.MANIFEST).read_text())
    text = again.output
    assert f"model      sha256 {old_manifest['model']['sha256'][:16]} -> {new_sha[:16]} (changed)" in text
    assert "ops        unchanged" in text and "updated    " in text
    assert f"left alone 3 file(s) of yours: {', '.join(sorted(users))}" in text
    # the user's files: byte for byte, and not even rewritten
    assert {rel: ((lib / rel).read_bytes(), (lib / rel).stat().st_mtime_ns) for rel in users} == before
    # the export's files: exactly the new manifest's, with its hashes
    assert manifest["model"]["sha256"] == new_sha and "pending" not in manifest
    assert {rel: ex._sha256(lib / rel) for rel in manifest["files"]} == manifest["files"]
    assert set(snapshot(lib)) == set(manifest["files"]) | set(users) | {ex.MANIFEST}
    assert (lib / "model.tflite").read_bytes() == new.model_bytes
    assert json.loads((lib / "library.json").read_text())["version"] == "1.1.0"
    # the user's project now runs the retrained model
    new_ref = reference_outputs(new, probe)[0]
    assert new_ref != old_ref
    ran = compile_against_stubs(project, tmp_path / "o2").splitlines()
    assert ran[1] == "native: " + " ".join(map(str, new_ref))


def test_reexport_reports_ops_added_and_removed_and_removes_only_its_old_files(prepared, tmp_path):
    out = tmp_path / "lib"
    ex.export(prepared["ic"], "nano33ble", runtime="native", out=out)
    old_files = set(json.loads((out / ex.MANIFEST).read_text())["files"])
    (out / "src" / "mine.c").write_text("int mine;\n")
    result = ex.export(prepared["digits"], "nano33ble", runtime="tflm", out=out)
    now = set(result.manifest["files"])
    ic_ops, digits_ops = prepared["ic"].analysis.distinct_ops, prepared["digits"].analysis.distinct_ops
    lines = result.changes.lines(result.manifest)
    added = [o for o in digits_ops if o not in ic_ops]
    removed = [o for o in ic_ops if o not in digits_ops]
    assert added or removed
    expected = "; ".join(p for p in ((f"added {', '.join(added)}" if added else ""),
                                     (f"removed {', '.join(removed)}" if removed else "")) if p)
    assert f"ops        {expected}" in lines
    assert "runtime    native -> tflm" in lines
    assert sorted(result.changes.removed) == sorted(old_files - now)
    assert "src/tinydeploy/td_conv.c" in result.changes.removed
    on_disk = set(snapshot(out))
    assert on_disk == now | {ex.MANIFEST, "src/mine.c"} and result.others == ["src/mine.c"]


def test_reexport_into_a_build_project_or_a_build_over_an_export_is_refused(prepared, tmp_path):
    """The manifests differ on purpose: `build --force` replaces a tinydeploy.json folder whole,
    which would take the user's files in an export folder with it."""
    out = tmp_path / "lib"
    ex.export(prepared["ic"], "nano33ble", fmt="folder", out=out)
    (out / "mine.txt").write_text("mine\n")
    before = snapshot(out)
    result = run_cli("build", IC, "--board", "qemu-m4", "-o", out, "--force")
    assert result.exit_code == 2 and "tinydeploy did not write" in result.stderr
    assert snapshot(out) == before


def test_an_update_that_fails_half_way_puts_everything_back_with_a_simulated_failure(
        prepared, tmp_path, monkeypatch):
    """A failure in the middle of moving files (simulated: the fifth rename raises, as a full disk
    or a Ctrl-C would) leaves the export as it was, and nothing beside it."""
    out = tmp_path / "lib"
    ex.export(prepared["ic"], "nano33ble", out=out)
    (out / "mine.txt").write_text("mine\n")
    before = snapshot(out)
    real_rename, calls = os.rename, []

    def failing_rename(src, dst):
        calls.append(src)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(ex.os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        ex.export(prepared["digits"], "nano33ble", out=out)
    monkeypatch.undo()
    assert len(calls) > 5   # the failure, then the moves back
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]


KILLED_EXPORT = """
import os, sys
from tinydeploy import export as ex
from tinydeploy.build import prepare

real, calls = os.rename, []
def rename(src, dst):
    calls.append(src)
    if len(calls) == int(sys.argv[3]):
        os._exit(9)          # killed: no rollback, no cleanup
    return real(src, dst)
ex.os.rename = rename
ex.export(prepare(sys.argv[1]), "nano33ble", out=sys.argv[2])
"""


def test_an_update_killed_half_way_is_completed_by_the_next_export(digits_path, tmp_path):
    """A kill -9 in the middle of an update (in a child process, at its fourth file move) leaves old
    and new files mixed; the next export recognises the new ones as its own (the manifest's
    `pending` list) and finishes, with the user's file untouched and nothing left beside."""
    import sys

    out = tmp_path / "lib"
    first = run_cli("export", IC, "--board", "nano33ble", "-o", out)
    assert first.exit_code == 0, first.stderr
    (out / "mine.txt").write_text("mine\n")
    child = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(digits_path), str(out), "4"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 9, child.stderr
    half = json.loads((out / ex.MANIFEST).read_text())
    assert half["pending"] and half["model"]["name"] == "pretrainedResnet_quant"
    assert list(tmp_path.glob(".lib.tinydeploy-stage-*"))          # what the kill left beside
    again = run_cli("export", digits_path, "--board", "nano33ble", "-o", out)
    assert again.exit_code == 0, again.output + again.stderr
    manifest = json.loads((out / ex.MANIFEST).read_text())
    assert "pending" not in manifest and manifest["model"]["name"] == "digits"
    assert {rel: ex._sha256(out / rel) for rel in manifest["files"]} == manifest["files"]
    assert (out / "mine.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]


def test_a_second_tinydeploy_aiming_at_the_same_export_stops_at_once(tmp_path):
    import sys

    out = tmp_path / "lib"
    with ex.claim(out):
        run = subprocess.run([sys.executable, "-m", "tinydeploy", "export", str(IC), "--board",
                              "nano33ble", "-o", str(out)], capture_output=True, text=True,
                             timeout=120)
    assert run.returncode == 2
    assert f"another tinydeploy (pid {os.getpid()}) is writing" in run.stderr
    assert not out.exists()


def test_a_model_name_reaches_c_only_escaped(tmp_path):
    """A file name with quotes, a backslash, a trigraph and non-ASCII: the library gets a clean
    name, and TD_MODEL_NAME (compiled with trigraphs on, -Werror) holds the name exactly."""
    name = 'my "best" ??= modèle\\v2??-'
    model = tmp_path / f"{name}.tflite"
    shutil.copyfile(MLPERF / "ad01_int8.tflite", model)
    result = run_cli("export", model, "--board", "qemu-m4", "--format", "folder", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output + result.stderr
    folder = tmp_path / "out"
    manifest = json.loads((folder / ex.MANIFEST).read_text())
    assert manifest["library"] == "my_best_mod_le_v2_model"
    (tmp_path / "show.c").write_text('#include <stdio.h>\n#include <tinydeploy_model.h>\n'
                                     'int main(void) { fputs(TD_MODEL_NAME, stdout); return 0; }\n')
    build = subprocess.run(["gcc", "-std=c99", "-trigraphs", *WERROR, f"-I{folder / 'src'}",
                            str(tmp_path / "show.c"), "-o", str(tmp_path / "show")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    shown = subprocess.run([str(tmp_path / "show")], capture_output=True).stdout.decode()
    assert shown == name


# --------------------------------------------------------------------------- the CLI

def test_cli_export_prints_the_verdict_and_what_it_wrote(tmp_path):
    result = run_cli("export", IC, "--board", "nano33ble", "--runtime", "native", "-o",
                     tmp_path / "lib")
    assert result.exit_code == 0, result.output + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "model      pretrainedResnet_quant: 98,496 B int8 .tflite, 16 ops, 12,501,632 MACs"
    assert any(ln.startswith("verdict    nano33ble: fits (RAM") for ln in lines)
    assert "arena      20,600 B, planned by the native compiler (exact)" in lines
    files = len(json.loads((tmp_path / "lib" / ex.MANIFEST).read_text())["files"])
    assert f"wrote      {tmp_path / 'lib'}/ (pio-lib pretrainedResnet_quant_model 1.0.0, {files} files)" in lines
    data = json.loads(run_cli("export", IC, "--board", "nano33ble", "--runtime", "native", "-o",
                              tmp_path / "lib", "--json").stdout)
    assert data["written"] and data["changes"]["updated"] == [] and data["version"] == "1.0.0"


def test_a_model_that_does_not_fit_is_not_exported_unless_forced(tmp_path):
    vww = MLPERF / "vww_96_int8.tflite"
    args = ["export", vww, "--board", "qemu-m3", "--runtime", "tflm", "--format", "folder", "-o",
            tmp_path / "vww"]
    refused = run_cli(*args)
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: qemu-m3: RAM does not fit")
    assert "nothing exported (--force exports anyway)" in refused.stderr
    assert list(tmp_path.iterdir()) == []
    forced = run_cli(*args, "--force")
    assert forced.exit_code == 0, forced.stderr
    header = (tmp_path / "vww" / "src" / "tinydeploy_model.h").read_text()
    assert "#define TD_MODEL_FITS 0" in header
    assert "does not fit qemu-m3" in (tmp_path / "vww" / "README.md").read_text()


def _export_once(tmp: Path, runtime: str = "tflm") -> Path:
    out = tmp / "lib"
    result = run_cli("export", MLPERF / "ad01_int8.tflite", "--board", "nano33ble", "--runtime",
                     runtime, "-o", out)
    assert result.exit_code == 0, result.stderr
    return out


def _bad(tmp: Path, case: str) -> list:
    ad01 = MLPERF / "ad01_int8.tflite"
    base = [ad01, "--board", "nano33ble"]
    if case == "unknown board":
        return [ad01, "--board", "nope", "-o", tmp / "x"]
    if case == "pio-lib for an emulated board":
        return [ad01, "--board", "qemu-m4", "-o", tmp / "x"]
    if case == "a .zip for a folder format":
        return [*base, "-o", tmp / "x.zip"]
    if case == "an arduino-zip without .zip":
        return [*base, "--format", "arduino-zip", "-o", tmp / "x"]
    if case == "a folder of the user's":
        (tmp / "app").mkdir()
        (tmp / "app" / "main.cpp").write_text("int main() {}\n")
        return [*base, "-o", tmp / "app"]
    if case == "a zip of the user's":
        (tmp / "mine.zip").write_bytes(b"PK\x03\x04 not really")
        return [*base, "--format", "arduino-zip", "-o", tmp / "mine.zip"]
    if case == "a library zip of someone else":
        with zipfile.ZipFile(tmp / "other.zip", "w") as z:
            z.writestr("Other/library.properties", "name=Other\n")
        return [*base, "--format", "arduino-zip", "-o", tmp / "other.zip"]
    if case == "a damaged manifest":
        out = _export_once(tmp)
        (out / ex.MANIFEST).write_text("{ not json")
        return [*base, "-o", out]
    if case == "a manifest naming a file outside":
        out = _export_once(tmp)
        data = json.loads((out / ex.MANIFEST).read_text())
        data["files"]["../outside.txt"] = "0" * 64
        (out / ex.MANIFEST).write_text(json.dumps(data))
        (tmp / "outside.txt").write_text("not the export's\n")
        return [*base, "-o", out]
    if case == "a file of the user's where the export writes":
        out = _export_once(tmp)
        (out / "src" / "tinydeploy" / "td_fully_connected.c").write_text("/* mine */\n")
        return [*base, "--runtime", "native", "-o", out]
    if case == "a generated file the user edited":
        out = _export_once(tmp)
        with open(out / "src" / "tinydeploy" / "model_settings.h", "a") as f:
            f.write("#define MY_ARENA 9\n")
        return [*base, "-o", out]
    if case == "a link where the export writes":
        out = _export_once(tmp)
        (tmp / "elsewhere").mkdir()
        shutil.rmtree(out / "examples")
        (out / "examples").symlink_to(tmp / "elsewhere")
        return [*base, "-o", out]
    if case == "-o under a file":
        (tmp / "file").write_text("x")
        return [*base, "-o", tmp / "file" / "lib"]
    if case == "a bad --tflm-lib":
        return [*base, "--tflm-lib", tmp, "-o", tmp / "x"]
    if case == "a missing model":
        return [tmp / "nothere.tflite", "--board", "nano33ble", "-o", tmp / "x"]
    raise AssertionError(case)


BAD = ["unknown board", "pio-lib for an emulated board", "a .zip for a folder format",
       "an arduino-zip without .zip", "a folder of the user's", "a zip of the user's",
       "a library zip of someone else", "a damaged manifest", "a manifest naming a file outside",
       "a file of the user's where the export writes", "a generated file the user edited",
       "a link where the export writes", "-o under a file", "a bad --tflm-lib", "a missing model"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_error_line_and_touches_nothing(tmp_path, case):
    args = _bad(tmp_path, case)
    before = {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
              for p in tmp_path.rglob("*")}
    result = run_cli("export", *args)
    assert result.exit_code == 2, result.output + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and re.match(r"^error: .+ \(.+\)$", errors[0]), result.stderr
    assert "Traceback" not in result.output and "wrote " not in result.stdout
    after = {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
             for p in tmp_path.rglob("*")}
    assert after == before


def test_force_replaces_a_generated_file_the_user_edited_and_nothing_else(tmp_path):
    out = _export_once(tmp_path)
    settings = out / "src" / "tinydeploy" / "model_settings.h"
    original = settings.read_bytes()
    settings.write_bytes(original + b"#define MY_ARENA 9\n")
    (out / "mine.txt").write_text("mine\n")
    result = run_cli("export", MLPERF / "ad01_int8.tflite", "--board", "nano33ble", "-o", out, "--force")
    assert result.exit_code == 0, result.stderr
    assert settings.read_bytes() == original and (out / "mine.txt").read_text() == "mine\n"
    assert "replaced   your edits of src/tinydeploy/model_settings.h (--force)" in result.stdout
