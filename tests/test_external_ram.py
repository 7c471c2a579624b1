"""The arena in external RAM: checked, rendered with each framework's own mechanism, and run.

The model is a wide image stem (64x64x3 input, a 3x3 convolution to 80 channels, 4x4 max pooling,
a 1x1 convolution, global pooling, a dense classifier; seeded random weights): its 320 KB of
activations cannot be streamed away (max pooling reads the whole convolution output), so its arena
exceeds the 256 KB of RAM that qemu-m4's linker script allows, while the model itself is small.

- ``check`` puts the arena in the board's external RAM only when internal RAM is too small, says
  so with the speed caveat, and splits the RAM parts; without external RAM it does not fit.
- Rendering: qemu-m4's section attribute, Teensy's EXTMEM, ESP32's ps_malloc and the Portenta's
  SDRAM.malloc end up in model_settings.h / main.cpp / model.c as each framework wants them; the
  heap road is run on this host for both runtimes (native: bit-exact against the reference).
- End to end on qemu-m4 (mps2-an386's second RAM region, 16 MB at 0x21000000): the firmware
  links the arena into the NOLOAD EXT_RAM section (read from the ELF's symbol table), validates
  bit-exact, and the same model with the arena in RAM overflows the linker's RAM region.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tinydeploy.boards import load_board
from tinydeploy.check import check
from tinydeploy.cli import cli
from tinydeploy.report import check_matrix, memory_table
from tinydeploy.resources import firmware_dir

from paths import REPO

EXT_START, EXT_BYTES = 0x2100_0000, 16 << 20

needs_qemu = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")),
    reason="needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)")


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """(Prepared, path of its int8 .tflite, path of 3 validation samples) of the wide stem."""
    import keras

    from tinydeploy.build import prepare

    folder = tmp_path_factory.mktemp("wide")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(80, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    keras.Model(inputs, outputs, name="wide_stem").save(folder / "wide_stem.keras")
    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", x=rng.uniform(0, 1, (32, 64, 64, 3)).astype(np.float32))
    np.savez(folder / "samples.npz", x=rng.uniform(0, 1, (3, 64, 64, 3)).astype(np.float32))
    prepared = prepare(folder / "wide_stem.keras", calib=str(folder / "calib.npz"))
    tflite = folder / "wide_stem.tflite"
    tflite.write_bytes(prepared.model_bytes)
    return prepared, tflite, folder / "samples.npz"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def without_external_ram(tmp_path: Path, **sizes) -> Path:
    """qemu-m4's board file as a board of the user's own, without [external_ram] (and with other
    RAM limits if given)."""
    text = (REPO / "boards" / "qemu-m4.toml").read_text()
    text = text[:text.index("[external_ram]")].replace('id = "qemu-m4"', 'id = "qemu-m4-plain"')
    for key, value in sizes.items():
        text = re.sub(rf"(?m)^{key} = [\d_]+", f"{key} = {value}", text)
    path = tmp_path / "qemu-m4-plain.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- check

def test_check_puts_an_arena_too_big_for_ram_in_external_psram(wide):
    prepared = wide[0]
    result = check(prepared.measured, load_board("qemu-m4"), "native")
    arena = result.arena
    assert arena > 262_144 and result.fits and result.arena_external
    assert "arena" not in result.ram.parts and result.ram.fits
    assert result.external.parts == {"arena": arena} and result.external.available == EXT_BYTES
    assert result.verdict().startswith(
        "qemu-m4: fits with the arena in external PSRAM (16 MB at 0x21000000; emulated: QEMU runs "
        "it at the speed of internal RAM")
    data = result.to_dict()
    assert data["arena_placement"] == "external" and data["ram"]["fits"]
    assert (data["external_ram"]["arena"], data["external_ram"]["address"]) == (arena, "0x21000000")
    assert data["external_ram"]["speed"].startswith("emulated")
    table = memory_table(result)
    assert f"| external PSRAM | arena | {arena:,} |" in table and "| internal RAM | stack |" in table
    assert "| RAM |" not in table
    assert "fits, arena in ext. RAM" in check_matrix([result])


def test_without_external_ram_the_same_model_does_not_fit(wide):
    prepared, board = wide[0], load_board("qemu-m4")
    plain = check(prepared.measured, replace(board, external_ram=None), "native")
    assert not plain.fits and not plain.arena_external
    assert "RAM does not fit: needs" in plain.verdict() and plain.ram.parts["arena"] == plain.arena
    small = replace(board.external_ram, bytes=plain.arena - 1)
    too_small = check(prepared.measured, replace(board, external_ram=small), "native")
    assert not too_small.fits and f"the arena ({plain.arena:,} B) is larger" in too_small.verdict()
    # internal RAM is always the first choice: with room inside, the arena stays there
    roomy = check(prepared.measured, replace(board, ram_bytes=1 << 20), "native")
    assert roomy.fits and not roomy.arena_external and roomy.to_dict()["external_ram"] is None


# --------------------------------------------------------------------------- rendering

def _render(prepared, board, runtime: str, out: Path) -> Path:
    from tinydeploy.build import build

    result = build(prepared, board, runtime=runtime, out_dir=out)
    assert result.out_dir is not None and result.check.arena_external, result.check.verdict()
    return out / "src"


@pytest.mark.parametrize("runtime", ["tflm", "native"])
def test_esp32_s3_takes_the_arena_from_ps_malloc(wide, tmp_path, runtime):
    src = _render(wide[0], load_board("esp32s3_n8r8"), runtime, tmp_path / "p")
    settings = (src / "model_settings.h").read_text()
    assert "#define TD_ARENA_ALLOC(bytes) ps_malloc(bytes)" in settings
    assert "TD_ARENA_ATTR" not in settings and "#include" not in settings
    main = (src / "main.cpp").read_text()
    assert 'extern "C" void *td_arena_alloc(size_t bytes) {' in main and "TD_ARENA_SETUP" not in settings
    assert "    return TD_ARENA_ALLOC(bytes);" in main
    assert main.index('#include "model_settings.h"') < main.index("td_arena_alloc")
    if runtime == "native":
        model = (src / "model.c").read_text()
        assert "void *td_arena_alloc(size_t bytes);" in model and "td_arena_words" not in model


def test_portenta_includes_the_sdram_library(wide, tmp_path):
    board = replace(load_board("portenta_h7"), ram_bytes=262_144)  # a smaller AXI SRAM
    src = _render(wide[0], board, "tflm", tmp_path / "p")
    settings = (src / "model_settings.h").read_text()
    assert '#define TD_ARENA_INCLUDE "SDRAM.h"' in settings
    assert "#define TD_ARENA_ALLOC(bytes) SDRAM.malloc(bytes)" in settings
    # the FMC and SDRAM's heap come up (SDRAM.begin()) before the first SDRAM.malloc()
    assert "#define TD_ARENA_SETUP() SDRAM.begin()" in settings
    main = (src / "main.cpp").read_text()
    assert "#include TD_ARENA_INCLUDE" in main
    assert main.index("TD_ARENA_SETUP();") < main.index("return TD_ARENA_ALLOC(bytes);")


@pytest.mark.parametrize("runtime", ["tflm", "native"])
def test_teensy_puts_the_static_arena_in_extmem(wide, tmp_path, runtime):
    board = replace(load_board("teensy41"), ram_bytes=262_144)  # as if RAM1 were smaller
    src = _render(wide[0], board, runtime, tmp_path / "p")
    settings = (src / "model_settings.h").read_text()
    assert "#include <Arduino.h>" in settings and "#define TD_ARENA_ATTR EXTMEM" in settings
    assert "TD_ARENA_ALLOC" not in settings and "td_arena_alloc" not in (src / "main.cpp").read_text()
    if runtime == "native":
        model = (src / "model.c").read_text()
        assert '#include "model_settings.h"' in model
        assert re.search(r"TD_ARENA_ATTR static int32_t td_arena_words\[\d+\];", model)


def test_the_default_render_is_unchanged(wide, tmp_path):
    """A model whose arena fits RAM gets no external RAM code at all."""
    board = replace(load_board("qemu-m4"), ram_bytes=1 << 20)
    from tinydeploy.build import build

    build(wide[0], board, runtime="native", out_dir=tmp_path / "p")
    settings = (tmp_path / "p" / "src" / "model_settings.h").read_text()
    model = (tmp_path / "p" / "src" / "model.c").read_text()
    assert "TD_ARENA_EXTERNAL" not in settings and "TD_ARENA_ATTR" not in model
    assert re.search(r"\nstatic int32_t td_arena_words\[\d+\];", model)


def test_an_emulated_board_without_a_section_attribute_is_refused(wide, tmp_path):
    from tinydeploy.build import build
    from tinydeploy.errors import InputError

    board = load_board("qemu-m4")
    board = replace(board, external_ram=replace(board.external_ram, placement="heap",
                                                allocator="malloc"))
    with pytest.raises(InputError, match="bare-metal firmware does not have"):
        build(wide[0], board, runtime="native", out_dir=tmp_path / "p")
    assert not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- the heap road, on this host

ALLOCATOR = r"""
#include <stdint.h>
#include <stdlib.h>
size_t td_test_asked;
int td_test_refuse;
void *td_arena_alloc(size_t bytes)
{
    td_test_asked = bytes;
    if (td_test_refuse)
        return NULL;
    unsigned char *block = malloc(bytes + 3);
    return block + 3; /* not aligned: the runtimes must cope */
}
"""


@pytest.mark.parametrize("placement", ["heap", "static"])
def test_native_external_arena_is_bit_exact_on_the_host(tmp_path, placement):
    from tinydeploy import native
    from tinydeploy.reference import Reference

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    model_bytes = (REPO / "examples" / "mlperf_tiny" / "pretrainedResnet_quant.tflite").read_bytes()
    src = tmp_path / "src"
    result = native.compile_model(model_bytes, src, arena=placement)
    (src / "model_settings.h").write_text('#define TD_ARENA_ATTR __attribute__((section("td_ext")))\n')
    (src / "allocator.c").write_text(ALLOCATOR)
    lib = tmp_path / "model.so"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
                    f"-I{src}", "-o", str(lib), *map(str, sorted(src.glob("*.c")))], check=True)
    so = ctypes.CDLL(str(lib))
    so.td_model_input.restype = so.td_model_output.restype = ctypes.c_void_p
    if placement == "heap":
        ctypes.c_int.in_dll(so, "td_test_refuse").value = 1
        assert so.td_model_init() == -6 and so.td_model_input(0) is None
        ctypes.c_int.in_dll(so, "td_test_refuse").value = 0
    assert so.td_model_init() == 0 and so.td_model_init() == 0
    asked = ctypes.c_size_t.in_dll(so, "td_test_asked").value
    assert asked == (result.arena_bytes if placement == "heap" else 0)
    rng = np.random.default_rng(0)
    samples = rng.integers(-128, 128, (3, 1, 32, 32, 3), dtype=np.int8)
    expected = Reference(model_bytes).outputs(samples)
    for x, ref in zip(samples, expected):
        ctypes.memmove(so.td_model_input(0), x.tobytes(), x.nbytes)
        assert so.td_model_invoke() == 0
        got = np.frombuffer(ctypes.string_at(so.td_model_output(0), ref[0].nbytes), dtype=np.int8)
        np.testing.assert_array_equal(got.reshape(ref[0].shape), ref[0])


@pytest.mark.parametrize("refuse", [False, True])
def test_tflm_adapter_takes_its_arena_from_the_allocator(tmp_path, refuse):
    """td_runtime_tflm.cc against the stub TFLM headers (tests/stubs): with TD_ARENA_ALLOC it asks
    td_arena_alloc() once for the arena plus alignment slack and starts it on 16 bytes; no block
    is status -6, reported for every later call."""
    from tinydeploy.render import write_op_resolver

    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    write_op_resolver(tmp_path, "m", ["FULLY_CONNECTED"])
    (tmp_path / "model_data.h").write_text(
        'extern "C" const unsigned char g_stub_model[];\n#define TD_MODEL_DATA g_stub_model\n')
    (tmp_path / "model_settings.h").write_text(
        "#define TD_ARENA_BYTES 1024\n#define TD_ARENA_ALLOC(bytes) malloc(bytes)\n")
    (tmp_path / "main.cc").write_text(r"""
#include <cstdint>
#include <cstdio>
#include "td_runtime.h"
extern "C" const unsigned char g_stub_model[4] = {3, 0, 0, 0};
extern "C" size_t td_test_asked;
extern "C" int td_test_refuse;
int main() {
    td_test_refuse = REFUSE;
    int first = td_model_init(), second = td_model_init();
    const int8_t *in = td_model_input(0);
    std::printf("%d %d %zu %d %d\n", first, second, td_test_asked, in != nullptr,
                in != nullptr && (reinterpret_cast<uintptr_t>(in) & 15u) == 0);
    return 0;
}
""")
    (tmp_path / "allocator.c").write_text(ALLOCATOR)
    stubs = REPO / "tests" / "stubs" / "tflm"
    exe = tmp_path / "check"
    subprocess.run(["gcc", "-c", "-o", str(tmp_path / "allocator.o"), str(tmp_path / "allocator.c")],
                   check=True)
    subprocess.run(["g++", "-std=c++14", "-Wall", "-Wextra", "-Werror", f"-DREFUSE={int(refuse)}",
                    f"-I{tmp_path}", f"-I{firmware_dir()}", f"-I{stubs}", str(tmp_path / "main.cc"),
                    str(firmware_dir() / "tflm" / "td_runtime_tflm.cc"),
                    str(tmp_path / "allocator.o"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert out == (["-6", "-6", "1039", "0", "0"] if refuse else ["0", "0", "1039", "1", "1"])


# --------------------------------------------------------------------------- on qemu-m4

def _symbol_address(elf: Path, name: str) -> int:
    table = subprocess.run(["arm-none-eabi-nm", "-C", str(elf)], capture_output=True, text=True,
                           check=True).stdout
    for line in table.splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) == 3 and fields[2].endswith(name):
            return int(fields[0], 16)
    raise AssertionError(f"{name} not in the symbol table of {elf}")


def _nobits(elf: Path, section: str) -> bool:
    headers = subprocess.run(["arm-none-eabi-readelf", "-S", "-W", str(elf)], capture_output=True,
                             text=True, check=True).stdout
    return any(f" {section} " in line and "NOBITS" in line for line in headers.splitlines())


def _deploy(tmp_path: Path, tflite: Path, samples: Path, *extra) -> dict:
    result = invoke("deploy", tflite, "--samples", samples, "-o", tmp_path / "project", "--json",
                    tmp_path / "report.json", *extra)
    assert result.exit_code == 0, result.output + result.stderr
    assert "fits with the arena in external PSRAM" in result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["samples"] == 3 and report["exact_match"] == 1.0 and report["max_abs_diff"] == 0
    return report


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_native_arena_in_the_second_ram_region_validates_bit_exact(wide, tmp_path):
    prepared, tflite, samples = wide
    report = _deploy(tmp_path, tflite, samples)
    elf = tmp_path / "project" / "build" / "firmware.elf"
    arena = _symbol_address(elf, "td_arena_words")
    assert EXT_START <= arena < EXT_START + EXT_BYTES - report["arena_bytes"]
    assert report["arena_bytes"] > 262_144 and _nobits(elf, ".ext_ram")
    # the same model with the arena in internal RAM: the check says no, and so does the linker
    plain = without_external_ram(tmp_path)
    checked = invoke("check", tflite, "--board", plain, "--runtime", "native")
    assert checked.exit_code == 1 and "RAM does not fit" in checked.output
    forced = invoke("build", tflite, "--board", plain, "-o", tmp_path / "plain", "--force")
    assert forced.exit_code == 0 and "does not fit" in forced.output  # rendered anyway, as asked
    flashed = invoke("flash", tmp_path / "plain")
    assert flashed.exit_code != 0 and "RAM overflowed by" in flashed.stderr
    # QEMU runs the second region at the speed of the first: with room inside, the same time
    roomy = without_external_ram(tmp_path, ram_bytes=1 << 20, ram_limit=1 << 20)
    inside = invoke("deploy", tflite, "--board", roomy, "--samples", samples, "-o",
                    tmp_path / "inside", "--json", tmp_path / "inside.json")
    assert inside.exit_code == 0, inside.output + inside.stderr
    internal = json.loads((tmp_path / "inside.json").read_text())["latency_us"]["median"]
    assert internal == pytest.approx(report["latency_us"]["median"], rel=0.01)
    assert _symbol_address(tmp_path / "inside" / "build" / "firmware.elf", "td_arena_words") < EXT_START


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_tflm_arena_in_the_second_ram_region_validates_bit_exact(wide, tmp_path, tflm_lib):
    prepared, tflite, samples = wide
    report = _deploy(tmp_path, tflite, samples, "--runtime", "tflm", "--tflm-lib", tflm_lib)
    assert report["runtime"] == "tflm" and "host build" in report["reference"]
    elf = tmp_path / "project" / "build" / "firmware.elf"
    assert EXT_START <= _symbol_address(elf, "g_arena") < EXT_START + EXT_BYTES
    settings = (tmp_path / "project" / "src" / "model_settings.h").read_text()
    arena = int(re.search(r"#define TD_ARENA_BYTES (\d+)", settings).group(1))
    assert arena > 262_144 and report["arena_bytes"] <= arena
