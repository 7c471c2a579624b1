"""Board profiles: every bundled TOML loads, its sizes are sane and sourced, runtimes and external RAM
are declared as the boards have them, bad files fail clearly (see also tests/test_user_boards.py)."""

import json
import re
from pathlib import Path

import pytest

from tinydeploy.boards import (CORES, BoardFileError, BoardProfile, board_ids, list_boards,
                               load_board, load_board_file)
from tinydeploy.errors import InputError

# The boards issue 11 asks for, and today's: id -> the board.
REAL_BOARDS = {
    "nano33ble", "esp32", "esp32s3", "pico", "portenta_h7", "nucleo_l4r5zi", "nucleo_f746zg",
    "teensy41", "xiao_nrf52840_sense", "wio_terminal", "sparkfun_edge",
    "esp32c3", "esp32c6", "esp32s2", "esp32cam", "m5stack_core2", "xiao_esp32s3", "pico2", "picow",
    "teensy40", "blackpill_f411ce", "disco_f407vg", "nucleo_h743zi", "bluepill_f103c8", "nano33iot",
    "uno_r4_minima", "uno_r4_wifi", "uno", "mega2560", "microbit_v2", "nrf52_dk",
    "nano_rp2040_connect", "nicla_vision", "xiao_rp2040", "xiao_samd21", "feather_nrf52840_sense",
    "nucleo_l476rg", "nucleo_f446re", "esp32s3_n8r8", "esp_wrover_kit",
}
EMULATED_BOARDS = {"qemu-m4", "qemu-m3"}
AVR_BOARDS = {"uno", "mega2560"}
ESP32_BOARDS = {b for b in REAL_BOARDS if b.startswith(("esp", "m5stack", "xiao_esp32"))}
# The boards with external RAM, and its kind.
EXTERNAL_RAM = {"esp32s3_n8r8": "psram", "esp_wrover_kit": "psram", "esp32cam": "psram",
                "m5stack_core2": "psram", "xiao_esp32s3": "psram", "esp32s2": "psram",
                "portenta_h7": "sdram", "teensy41": "psram", "qemu-m4": "psram"}
# TFLM's arena_used_bytes() for the MLPerf Tiny VWW model on a Cortex-M4 (measured with upstream TFLM reference kernels on qemu-m4).
VWW_ARENA_ON_M4 = 100_660
SIZE_FIELDS = ("clock_hz", "flash_bytes", "ram_bytes", "framework_flash_bytes", "framework_ram_bytes")
# ([external_ram] carries its source in its own required 'source' field, checked below.)
PINNED_ARDUINO_TFLM = ("https://github.com/tensorflow/tflite-micro-arduino-examples.git"
                       "#07d1cca59a20508b9ab1e69e0cc76a3ace815eaa")


def test_every_required_board_is_bundled():
    assert set(board_ids()) == REAL_BOARDS | EMULATED_BOARDS
    assert len(REAL_BOARDS) >= 32


@pytest.mark.parametrize("board", list_boards(), ids=lambda b: b.id)
def test_board_sizes_are_sane(board: BoardProfile):
    assert board.core in CORES
    if board.core == "avr8":  # 8-bit AVR: KB, not hundreds of KB
        assert 2 * 1024 <= board.ram_bytes <= 8 * 1024 and 32_000 <= board.flash_bytes <= 256 * 1024
    else:
        assert 16 * 1024 <= board.ram_bytes <= 1024 * 1024
        assert 64 * 1024 <= board.flash_bytes <= 16 * 1024 * 1024
        assert board.ram_available > 8 * 1024
    assert 1_000_000 <= board.clock_hz <= 1_000_000_000
    assert 0 < board.framework_flash_bytes < board.flash_bytes // 2
    assert 0 < board.framework_ram_bytes < board.ram_bytes
    assert board.stack_bytes >= 256
    assert board.serial.baud >= 9600


@pytest.mark.parametrize("board", list_boards(), ids=lambda b: b.id)
def test_every_size_says_where_it_comes_from(board: BoardProfile):
    """Each size line carries a comment, or sits in a group of size lines right under a comment."""
    lines = Path(board.source).read_text().splitlines()

    def field(line: str) -> str:
        return line.split("=")[0].strip()

    for i, line in enumerate(lines):
        if field(line) not in SIZE_FIELDS or "#" in line:
            continue
        above = i - 1
        while field(lines[above]) in SIZE_FIELDS and "#" not in lines[above]:
            above -= 1
        assert lines[above].lstrip().startswith("#"), f"{board.source}: '{field(line)}' has no source"


@pytest.mark.parametrize("board", [load_board(b) for b in sorted(REAL_BOARDS)], ids=lambda b: b.id)
def test_real_boards_build_with_platformio_and_a_pinned_library(board):
    assert board.default_runner == "platformio"
    assert board.platformio is not None and board.qemu is None
    assert board.serial.usb_ids, "real boards need USB ids for port discovery"
    assert board.default_runtime in board.runtimes or not board.runtimes
    if board.tflm.available:
        assert board.default_runtime == "tflm"
        # Every TFLM library is pinned: a registry version or a git commit, never a floating ref.
        assert board.platformio.lib_deps
        for dep in board.platformio.lib_deps:
            assert re.search(r"@\d+\.\d+\.\d+$|\.git#[0-9a-f]{40}$", dep), dep
        assert board.platformio.tflm_header.endswith(".h")
    else:
        assert board.platformio.lib_deps == () and len(board.tflm.reason) > 40


@pytest.mark.parametrize("board_id", sorted(REAL_BOARDS - AVR_BOARDS))
def test_each_family_uses_the_tflm_library_that_serves_it(board_id):
    board = load_board(board_id)
    if board_id in ESP32_BOARDS:
        assert board.core.startswith(("xtensa", "riscv32"))
        # TensorFlowLite_ESP32 1.0.0 ships TFLM's reference kernels (its sync script drops ESP-NN).
        assert (board.tflm.library, board.tflm.kernels) == ("TensorFlowLite_ESP32", "reference")
        assert board.platformio.lib_deps == ("tanakamasayuki/TensorFlowLite_ESP32@1.0.0",)
    else:
        assert board.core.startswith("cortex-m")
        assert (board.tflm.library, board.tflm.kernels) == ("Arduino_TensorFlowLite", "cmsis_nn")
        assert board.platformio.lib_deps == (PINNED_ARDUINO_TFLM,)


def test_avr_boards_run_no_runtime_and_say_why():
    """No TFLM library targets AVR; the native kernels do compile for it, but tinydeploy's firmware
    does not size AVR yet: each profile says so, with the measured figures."""
    for board_id in AVR_BOARDS:
        board = load_board(board_id)
        assert board.core == "avr8" and board.rodata_in_ram and board.runtimes == ()
        assert "AVR" in board.runtime_unavailable("tflm")
        native = board.runtime_unavailable("native")
        assert "bit-exact" in native and "2,073 B" in native and "PROGMEM" in native
    assert (load_board("uno").flash_bytes, load_board("uno").ram_bytes) == (32_256, 2_048)


def test_a_runtime_the_board_lacks_is_a_not_available_verdict():
    from tinydeploy.check import check
    from tinydeploy.report import check_matrix

    class Tiny:  # what check() reads of a measured model: a 1 KB, one-op native plan
        analysis = type("A", (), {"distinct_ops": ["FULLY_CONNECTED"], "tflm_too_new": [],
                                  "tflm_missing": [], "per_channel_fully_connected": False,
                                  "model_bytes": 1024})()
        native = type("N", (), {"unsupported_ops": [], "arena_bytes": 32, "weights_bytes": 288,
                                "flash_bytes": 2048})()

    uno = load_board("uno")
    result = check(Tiny(), uno, "native")
    assert not result.fits and result.unavailable == uno.native.reason
    assert result.verdict() == f"uno: the native runtime is not available on this board: {uno.native.reason}"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["available"] is False and data["unavailable_reason"] == uno.native.reason
    assert data["ram"]["arena"] == 32  # what the runtime would need is still reported
    assert check_matrix([result]).splitlines()[-1].endswith("not available")
    fits = check(Tiny(), load_board("nano33ble"), "native")
    assert fits.fits and fits.to_dict()["available"] is True and fits.unavailable == ""


@pytest.mark.parametrize("board_id", sorted(EXTERNAL_RAM))
def test_external_ram_is_declared_with_its_mechanism(board_id):
    ext = load_board(board_id).external_ram
    assert ext is not None and ext.kind == EXTERNAL_RAM[board_id]
    assert ext.bytes >= 2 * 1024 * 1024 and ext.speed and ext.source
    if ext.placement == "static":
        assert ext.attribute
    else:
        assert ext.placement == "heap" and ext.allocator
    if board_id in ESP32_BOARDS:
        assert ext.allocator == "ps_malloc"


def test_external_ram_facts():
    teensy, portenta, m4 = load_board("teensy41"), load_board("portenta_h7"), load_board("qemu-m4")
    assert teensy.external_ram.optional and teensy.external_ram.attribute == "EXTMEM"
    assert teensy.external_ram.address == 0x7000_0000
    assert (portenta.external_ram.allocator, portenta.external_ram.include) == ("SDRAM.malloc", "SDRAM.h")
    assert (portenta.external_ram.address, portenta.external_ram.bytes) == (0x6000_0000, 8 * 1024 * 1024)
    # qemu-m4's second region: QEMU's MPS2 PSRAM, 16 MB at 0x21000000, outside the RAM the linker
    # script gives the firmware (0x20000000 + 256 KB), so the two never overlap.
    ext = m4.external_ram
    assert (ext.address, ext.bytes, ext.placement) == (0x2100_0000, 16 * 1024 * 1024, "static")
    assert ".ext_ram" in ext.attribute
    assert m4.qemu.ram_origin + m4.qemu.ram_limit <= ext.address
    assert load_board("qemu-m3").external_ram is None and load_board("esp32").external_ram is None
    assert {b.id for b in list_boards() if b.external_ram} == set(EXTERNAL_RAM)


def test_emulated_boards_are_limited_like_their_models():
    m4, m3 = load_board("qemu-m4"), load_board("qemu-m3")
    assert (m4.qemu.machine, m4.qemu.uart, m4.core) == ("mps2-an386", "cmsdk", "cortex-m4f")
    assert (m4.flash_bytes, m4.ram_bytes) == (1024 * 1024, 256 * 1024)
    assert "-mfpu=fpv4-sp-d16" in m4.qemu.cpu_flags and "-mfloat-abi=hard" in m4.qemu.cpu_flags
    assert (m3.qemu.machine, m3.qemu.uart, m3.core) == ("lm3s6965evb", "stellaris", "cortex-m3")
    assert (m3.flash_bytes, m3.ram_bytes) == (256 * 1024, 64 * 1024)
    for board in (m4, m3):
        assert board.emulated and board.default_runtime == "native" and board.default_runner == "qemu"
        assert board.qemu.ram_origin == 0x2000_0000 and board.serial.usb_ids == ()
        assert board.runtimes == ("native", "tflm")


def test_vww_fits_the_nano_but_not_the_m3():
    """The issue's own verdicts, as far as the profiles decide them."""
    assert load_board("nano33ble").ram_available > VWW_ARENA_ON_M4
    assert load_board("qemu-m3").ram_available < VWW_ARENA_ON_M4


def test_usb_ids_parse_as_hex_pairs():
    assert (0x2341, 0x805A) in load_board("nano33ble").serial.usb_ids
    assert (0x10C4, 0xEA60) in load_board("esp32").serial.usb_ids
    assert (0x2E8A, 0x000F) in load_board("pico2").serial.usb_ids


def test_unknown_board_suggests_the_closest_ids():
    with pytest.raises(InputError) as err:
        load_board("nano33")
    assert str(err.value).startswith("unknown board 'nano33' (did you mean ")
    assert "'nano33ble'" in str(err.value) and "'nano33iot'" in str(err.value)
    assert "--board path/to/board.toml" in str(err.value)
    with pytest.raises(InputError) as err:  # nothing close: the known ids are listed
        load_board("foo")
    message = str(err.value)
    assert message.startswith("unknown board 'foo' (known: blackpill_f411ce, ")
    assert "qemu-m4" in message and "uno_r4_wifi" in message


GOOD = Path(__file__).resolve().parent.parent / "boards" / "nano33ble.toml"


def _variant(tmp_path: Path, name: str, *changes: tuple[str, str]) -> Path:
    text = GOOD.read_text()
    for old, new in changes:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace('id = "nano33ble"', f'id = "{name}"'))
    return path


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("ram_bytes = 262_144", "", "missing field 'ram_bytes' (an integer)"),
        ("flash_bytes = 983_040", 'flash_bytes = "1MB"', "field 'flash_bytes' must be an integer, got '1MB'"),
        ("stack_bytes = 8_192", "stack_bytes = true", "field 'stack_bytes' must be an integer"),
        ("clock_hz = 64_000_000", "clock_hz = 64_000_000\nclock_mhz = 64", "unknown field 'clock_mhz' (did you mean 'clock_hz'?)"),
        ('board = "nano33ble"', "board = 1", "[platformio] field 'board' must be a string"),
        ('usb_ids = ["2341:005A"', 'usb_ids = ["2341-005A"', "usb_ids entry '2341-005A' must be 'VID:PID'"),
        ('default_runner = "platformio"', 'default_runner = "qemu"', "the [qemu] section is missing"),
        ('default_runtime = "tflm"', 'default_runtime = "onnx"', "'default_runtime' is 'onnx' but must be one of tflm, native"),
        ('core = "cortex-m4f"', 'core = "cortex-m4F"', "field 'core' is 'cortex-m4F' but must be one of"),
        ("framework_ram_bytes = 46_080", "framework_ram_bytes = 300_000", "leave no RAM for the arena"),
        ("baud = 115_200", "baud = 0", "'baud' must be positive"),
        ('kernels = "cmsis_nn"', 'kernels = "cmsis-nn"', "(did you mean 'cmsis_nn'?)"),
        ('library = "Arduino_TensorFlowLite"\n', 'available = false\n', "available = false needs a 'reason'"),
    ],
)
def test_bad_board_file_names_file_and_field(tmp_path, old, new, expected):
    path = _variant(tmp_path, "broken", (old, new))
    with pytest.raises(BoardFileError) as err:
        load_board_file(path)
    assert str(err.value).startswith(f"board file {path}")
    assert any(expected in line for line in err.value.problems), err.value.problems
    if len(err.value.problems) == 1:  # a single mistake is the error line itself
        assert expected in str(err.value) and err.value.details == ()
    else:
        assert err.value.details == err.value.problems


def test_every_mistake_of_a_file_is_reported_one_line_each(tmp_path):
    path = _variant(tmp_path, "broken",
                    ("ram_bytes = 262_144", 'ram_bytes = "256K"'),
                    ("stack_bytes = 8_192", "stack_size = 8_192"),
                    ('usb_ids = ["2341:005A"', 'usb_ids = ["2341"'),
                    ('default_runtime = "tflm"', 'default_runtime = "tlfm"'))
    with pytest.raises(BoardFileError) as err:
        load_board_file(path)
    assert str(err.value).startswith(f"board file {path} has 5 mistakes (fix the board file")
    assert err.value.problems == (
        "field 'ram_bytes' must be an integer, got '256K'",
        "unknown field 'stack_size' (did you mean 'stack_bytes'?)",
        "missing field 'stack_bytes' (an integer)",
        "field 'default_runtime' is 'tlfm' but must be one of tflm, native (did you mean 'tflm'?)",
        "[serial] usb_ids entry '2341' must be 'VID:PID' in hex, e.g. '2341:805A'",
    )


def external_ram_problems(tmp_path, section: str) -> tuple[str, ...]:
    """The mistakes load_board_file finds in the Nano 33 BLE's profile with ``section`` added."""
    path = tmp_path / "ext.toml"
    path.write_text(GOOD.read_text().replace('id = "nano33ble"', 'id = "ext"')
                    + "\n[external_ram]\n" + section)
    with pytest.raises(BoardFileError) as err:
        load_board_file(path)
    return err.value.problems


def test_external_ram_section_is_checked(tmp_path):
    problems = external_ram_problems(
        tmp_path, 'kind = "hyperram"\nbytes = -1\nplacement = "heap"\nspeed = ""\n')
    assert problems == (
        "[external_ram] missing field 'source' (a string)",
        "[external_ram] field 'kind' is 'hyperram' but must be one of psram, sdram (did you mean 'psram'?)",
        "[external_ram] field 'bytes' must be positive, got -1",
        "[external_ram] placement = \"heap\" needs the 'allocator' that hands out a block of it (e.g. 'ps_malloc')",
        "[external_ram] field 'speed' must not be empty",
    )


def test_external_ram_setup_needs_an_allocator(tmp_path):
    problems = external_ram_problems(
        tmp_path, 'kind = "psram"\nbytes = 8\nplacement = "static"\nattribute = "EXTMEM"\n'
                  'setup = "psram_begin()"\nspeed = "slow"\nsource = "the board\'s manual"\n')
    assert problems == (
        "[external_ram] 'setup' runs before the allocator: it needs placement = \"heap\"",)


def test_board_id_must_match_file_name(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text(GOOD.read_text())
    with pytest.raises(InputError, match="field 'id' is 'nano33ble' but the file is named 'other.toml'"):
        load_board_file(path)


def test_invalid_toml_is_an_input_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("id = \n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_board_file(path)


def test_a_valid_user_board_file_loads(tmp_path):
    board = load_board_file(_variant(tmp_path, "my_nano", ("ram_bytes = 262_144", "ram_bytes = 200_000")))
    assert (board.id, board.ram_bytes, board.origin) == ("my_nano", 200_000, "file")


def test_profiles_serialise_to_json():
    data = json.loads(json.dumps(load_board("nano33ble").to_dict()))
    assert data["serial"]["usb_ids"] == ["2341:005A", "2341:805A"]
    assert data["platformio"]["lib_deps"][0].startswith("https://github.com/tensorflow/tflite-micro-arduino-examples")
    assert data["ram_available"] == 262_144 - 46_080 - 8_192 and data["qemu"] is None
    assert data["runtimes"] == ["tflm", "native"] and data["external_ram"] is None
    m4 = json.loads(json.dumps(load_board("qemu-m4").to_dict()))
    assert m4["qemu"]["machine"] == "mps2-an386"
    assert m4["external_ram"]["address"] == "0x21000000" and m4["external_ram"]["bytes"] == 16 * 1024 * 1024
    uno = json.loads(json.dumps(load_board("uno").to_dict()))
    assert uno["runtimes"] == [] and uno["tflm"]["available"] is False and uno["rodata_in_ram"] is True


def test_every_bundled_board_is_listed_once_and_pio_boards_are_distinct():
    boards = list_boards()
    assert [b.id for b in boards] == sorted(REAL_BOARDS | EMULATED_BOARDS)
    pio_boards = [b.platformio.board for b in boards if b.platformio]
    assert len(pio_boards) == len(set(pio_boards))
    assert all(b.origin == "bundled" and b.shadows is None for b in boards)
