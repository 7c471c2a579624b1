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

import json
import os
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
  char line[48];
  snprintf(line, sizeof line, "%s: %d\n", TD_MODEL_RUNTIME, td_model_output(0)[0]);
  log_line(line);
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
    assert manifest["model"]["sha256"] == ex.hashlib.sha256(p.model_bytes).hexdigest()
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
    sections = pio_config(project)
    assert sections[f"env:{board}"]["framework"] == ["arduino"]
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
                         f"native: {reference_outputs(p, x[None])[0][0]}"]


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
    from tinydeploy import baremetal, tflm_firmware, tflm_lib
    from tinydeploy.boards import load_board
    from tinydeploy.resources import firmware_dir
    from tinydeploy.runners.qemu import QEMU

    board = load_board("qemu-m4")
    src = export_dir / "src"
    generated = src / "tinydeploy"
    cxx = None
    if lib is not None:
        compiled = tflm_lib.compile_library(lib, tflm_firmware.core_target(board))
        cxx = baremetal.CxxPart(
            (*sorted(generated.glob("*.cpp")), firmware_dir() / "baremetal" / baremetal.TFLM_PORT),
            compiled.target.cxx_flags, (lib.src, src), (compiled.archive,))
    firmware = baremetal.build_firmware(board, sorted(generated.glob("*.c")), work / "build",
                                        [src, work], ["TD_ON_QEMU"], cxx=cxx,
                                        main=str(work / "main.c"), protocol=False)
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
