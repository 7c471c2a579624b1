"""Board profiles: every bundled TOML loads, its sizes are sane and sourced, bad files fail clearly."""

import re
from pathlib import Path

import pytest

from tinydeploy.boards import BoardProfile, board_ids, list_boards, load_board, load_board_file
from tinydeploy.errors import InputError

REAL_BOARDS = {
    "nano33ble", "esp32", "esp32s3", "pico", "portenta_h7", "nucleo_l4r5zi", "nucleo_f746zg",
    "teensy41", "xiao_nrf52840_sense", "wio_terminal", "sparkfun_edge",
}
EMULATED_BOARDS = {"qemu-m4", "qemu-m3"}
# TFLM's arena_used_bytes() for the MLPerf Tiny VWW model on a Cortex-M4 (measured with upstream TFLM reference kernels on qemu-m4).
VWW_ARENA_ON_M4 = 100_660
SIZE_FIELDS = ("clock_hz", "flash_bytes", "ram_bytes", "framework_flash_bytes", "framework_ram_bytes")


def test_every_required_board_is_bundled():
    assert set(board_ids()) == REAL_BOARDS | EMULATED_BOARDS


@pytest.mark.parametrize("board", list_boards(), ids=lambda b: b.id)
def test_board_sizes_are_sane(board: BoardProfile):
    assert 16 * 1024 <= board.ram_bytes <= 1024 * 1024
    assert 128 * 1024 <= board.flash_bytes <= 16 * 1024 * 1024
    assert 1_000_000 <= board.clock_hz <= 1_000_000_000
    assert 0 < board.framework_flash_bytes < board.flash_bytes // 2
    assert 0 < board.framework_ram_bytes < board.ram_bytes
    assert board.stack_bytes >= 1024
    assert board.ram_available > 32 * 1024 or board.id == "qemu-m3"
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


@pytest.mark.parametrize("board_id", sorted(REAL_BOARDS))
def test_real_boards_build_tflm_with_platformio(board_id):
    board = load_board(board_id)
    assert (board.default_runtime, board.default_runner) == ("tflm", "platformio")
    assert board.platformio is not None and board.qemu is None
    assert board.serial.usb_ids, "real boards need USB ids for port discovery"
    # Every TFLM library is pinned: a registry version or a git commit, never a floating ref.
    for dep in board.platformio.lib_deps:
        assert re.search(r"@\d+\.\d+\.\d+$|\.git#[0-9a-f]{40}$", dep), dep
    assert board.platformio.tflm_header.endswith(".h")


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


def test_vww_fits_the_nano_but_not_the_m3():
    """The issue's own verdicts, as far as the profiles decide them."""
    assert load_board("nano33ble").ram_available > VWW_ARENA_ON_M4
    assert load_board("qemu-m3").ram_available < VWW_ARENA_ON_M4


def test_usb_ids_parse_as_hex_pairs():
    assert (0x2341, 0x805A) in load_board("nano33ble").serial.usb_ids
    assert (0x10C4, 0xEA60) in load_board("esp32").serial.usb_ids


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(InputError) as err:
        load_board("foo")
    message = str(err.value)
    assert message.startswith("unknown board 'foo' (known: esp32, esp32s3, ")
    assert "qemu-m4" in message and message.endswith("see 'tinydeploy boards')")


GOOD = Path(__file__).resolve().parent.parent / "boards" / "nano33ble.toml"


def _variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = GOOD.read_text()
    assert old in text
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new, 1).replace('id = "nano33ble"', f'id = "{name}"'))
    return path


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("ram_bytes = 262_144", "", "missing field 'ram_bytes' (an integer)"),
        ("flash_bytes = 983_040", 'flash_bytes = "1MB"', "field 'flash_bytes' must be an integer, got '1MB'"),
        ("stack_bytes = 8_192", "stack_bytes = true", "field 'stack_bytes' must be an integer"),
        ("clock_hz = 64_000_000", "clock_hz = 64_000_000\nclock_mhz = 64", "unknown field 'clock_mhz'"),
        ('board = "nano33ble"', "board = 1", "[platformio] field 'board' must be a string"),
        ('usb_ids = ["2341:005A"', 'usb_ids = ["2341-005A"', "usb_ids entry '2341-005A' must be 'VID:PID'"),
        ('default_runner = "platformio"', 'default_runner = "qemu"', "the [qemu] section is missing"),
        ('default_runtime = "tflm"', 'default_runtime = "onnx"', "'default_runtime' must be one of tflm, native"),
        ("framework_ram_bytes = 46_080", "framework_ram_bytes = 300_000", "leave no RAM for the arena"),
        ("baud = 115_200", "baud = 0", "'baud' must be positive"),
    ],
)
def test_bad_board_file_names_file_and_field(tmp_path, old, new, expected):
    path = _variant(tmp_path, "broken", old, new)
    with pytest.raises(InputError) as err:
        load_board_file(path)
    assert str(path) in str(err.value) and expected in str(err.value)


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
    board = load_board_file(_variant(tmp_path, "my_nano", "ram_bytes = 262_144", "ram_bytes = 200_000"))
    assert (board.id, board.ram_bytes) == ("my_nano", 200_000)


def test_profiles_serialise_to_json():
    import json

    data = json.loads(json.dumps(load_board("nano33ble").to_dict()))
    assert data["serial"]["usb_ids"] == ["2341:005A", "2341:805A"]
    assert data["platformio"]["lib_deps"][0].startswith("https://github.com/tensorflow/tflite-micro-arduino-examples")
    assert data["ram_available"] == 262_144 - 46_080 - 8_192 and data["qemu"] is None
    assert json.loads(json.dumps(load_board("qemu-m4").to_dict()))["qemu"]["machine"] == "mps2-an386"
