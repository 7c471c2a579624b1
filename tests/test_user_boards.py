"""Your own board: `--board path/to/board.toml` and folders in $TINYDEPLOY_BOARDS, through the CLI as
a user runs it: a good file works in every command, a broken one gets one line per mistake."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinydeploy.boards import BOARDS_PATH_ENV, list_boards, load_board

from paths import MLPERF, REPO

GOOD = REPO / "boards" / "nano33ble.toml"
MODEL = MLPERF / "ad01_int8.tflite"  # a .tflite: no conversion, check takes about a second


def run_cli(*args, boards_path: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != BOARDS_PATH_ENV}
    if boards_path is not None:
        env[BOARDS_PATH_ENV] = boards_path
    return subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def my_board(folder: Path, board_id: str = "my_board", ram: int = 131_072, **changes: str) -> Path:
    """A user's board file: the Nano 33 BLE's profile with another id and RAM size."""
    text = GOOD.read_text().replace('id = "nano33ble"', f'id = "{board_id}"')
    text = text.replace("ram_bytes = 262_144", f"ram_bytes = {ram:_}")
    text = text.replace('name = "Arduino Nano 33 BLE (Sense)"', 'name = "My nRF52840 board"')
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{board_id}.toml"
    path.write_text(text)
    return path


def assert_no_traceback(proc):
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def test_board_file_path_works_in_check_and_boards_show(tmp_path):
    path = my_board(tmp_path / "mine")
    proc = run_cli("check", MODEL, "--board", path, "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["board"] == "my_board" and row["ram"]["available"] == 131_072 and row["fits"]
    show = run_cli("boards", "show", path, "--json")
    assert show.returncode == 0, show.stderr
    data = json.loads(show.stdout)
    assert (data["origin"], data["source"], data["shadows"]) == ("file", str(path), None)


def test_board_file_path_renders_a_project(tmp_path):
    path = my_board(tmp_path / "mine")
    out = tmp_path / "out"
    proc = run_cli("build", MODEL, "--board", path, "-o", out)
    assert proc.returncode == 0, proc.stderr
    ini = (out / "platformio.ini").read_text()
    assert "[env:my_board]" in ini and "board = nano33ble" in ini
    assert "My nRF52840 board (my_board)" in ini


@pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc (bash .ci/setup)")
def test_a_project_for_a_board_file_carries_it_to_flash(tmp_path):
    """flash and validate find the board in the project, not where the user's file once was."""
    text = (REPO / "boards" / "qemu-m4.toml").read_text().replace('id = "qemu-m4"', 'id = "my_m4"')
    path = tmp_path / "mine" / "my_m4.toml"
    path.parent.mkdir()
    path.write_text(text)
    out = tmp_path / "out"
    proc = run_cli("build", MODEL, "--board", path, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "my_m4.toml").read_text() == text
    assert json.loads((out / "tinydeploy.json").read_text())["board_file"] == "my_m4.toml"
    path.unlink()  # the user's file is gone (or edited): the project keeps the one it was built for
    flashed = run_cli("flash", out)
    assert flashed.returncode == 0 and "for my_m4:" in flashed.stdout, flashed.stderr
    (out / "my_m4.toml").unlink()
    broken = run_cli("flash", out)
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1
    assert "lacks the board file its manifest names ('my_m4.toml')" in broken.stderr
    assert_no_traceback(broken)


def test_a_boards_folder_joins_the_bundled_boards(tmp_path):
    folder = tmp_path / "boards"
    my_board(folder)
    listing = run_cli("boards", boards_path=str(folder))
    assert listing.returncode == 0, listing.stderr
    mine = [line for line in listing.stdout.splitlines() if line.startswith("my_board ")]
    assert len(mine) == 1 and mine[0].endswith("(yours)") and "My nRF52840 board" in mine[0]
    assert "nano33ble" in listing.stdout  # the bundled ones are still there
    rows = json.loads(run_cli("check", MODEL, "--board", "all", "--json", boards_path=str(folder)).stdout)
    assert {row["board"] for row in rows} == {b.id for b in list_boards()} | {"my_board"}
    show = json.loads(run_cli("boards", "show", "my_board", "--json", boards_path=str(folder)).stdout)
    assert show["origin"] == "user" and show["ram_bytes"] == 131_072


def test_several_folders_like_path_first_one_wins(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    my_board(first, ram=100_000)
    my_board(second, ram=200_000)
    my_board(second, board_id="other_board")
    path = f"{first}{os.pathsep}{os.pathsep}{second}"  # an empty entry is skipped, as in PATH
    show = json.loads(run_cli("boards", "show", "my_board", "--json", boards_path=path).stdout)
    assert show["ram_bytes"] == 100_000
    assert json.loads(run_cli("boards", "show", "other_board", "--json", boards_path=path).stdout)["id"] == "other_board"


def test_a_user_board_with_a_bundled_id_replaces_it_and_says_so(tmp_path):
    folder = tmp_path / "boards"
    path = my_board(folder, board_id="nano33ble", ram=200_000)
    listing = run_cli("boards", boards_path=str(folder))
    assert listing.returncode == 0, listing.stderr
    assert (f"note: nano33ble is your board file {path}; it replaces the bundled "
            f"{REPO / 'boards' / 'nano33ble.toml'}") in listing.stderr
    show = json.loads(run_cli("boards", "show", "nano33ble", "--json", boards_path=str(folder)).stdout)
    assert show["ram_bytes"] == 200_000 and show["shadows"] == str(REPO / "boards" / "nano33ble.toml")
    row = json.loads(run_cli("check", MODEL, "--board", "nano33ble", "--json", boards_path=str(folder)).stdout)
    assert row["ram"]["available"] == 200_000


def test_a_broken_board_file_gets_one_line_per_mistake(tmp_path):
    path = my_board(tmp_path / "mine", **{
        "flash_bytes = 983_040": 'flash_bytes = "960K"',
        "clock_hz = 64_000_000": "clock_hz = 64_000_000\nclok_hz = 64",
        'baud = 115_200': "baud = -5",
    })
    proc = run_cli("check", MODEL, "--board", path)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert lines[-4] == (f"error: board file {path} has 3 mistakes (fix the board file; "
                         f"boards/nano33ble.toml is a complete example)")
    assert lines[-3:] == [  # in the file's order
        "  unknown field 'clok_hz' (did you mean 'clock_hz'?)",
        "  field 'flash_bytes' must be an integer, got '960K'",
        "  [serial] field 'baud' must be positive, got -5",
    ]


def test_a_single_mistake_is_one_error_line(tmp_path):
    path = my_board(tmp_path / "mine", **{'core = "cortex-m4f"': 'core = "m4"'})
    proc = run_cli("boards", "show", path)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert proc.stderr.strip().splitlines() == [
        f"error: board file {path}: field 'core' is 'm4' but must be one of "
        "cortex-m0plus, cortex-m3, cortex-m4, cortex-m4f, cortex-m7, cortex-m33, xtensa-lx6, "
        "xtensa-lx7, riscv32-imc, riscv32-imac, avr8 (fix the board file; boards/nano33ble.toml is "
        "a complete example)"]


def test_a_broken_file_in_the_boards_folder_stops_the_listing_naming_it(tmp_path):
    folder = tmp_path / "boards"
    my_board(folder)
    broken = my_board(folder, board_id="broken", **{"stack_bytes = 8_192": ""})
    proc = run_cli("boards", boards_path=str(folder))
    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert proc.stderr.strip().splitlines()[0].startswith(
        f"error: board file {broken}: missing field 'stack_bytes' (an integer)")


@pytest.mark.parametrize("case", ["missing-file", "folder-not-a-folder", "unknown-id", "a-folder"])
def test_bad_board_names_are_one_clear_line(tmp_path, case):
    boards_path = None
    board = "my_board"
    expected = ""
    if case == "missing-file":
        board, expected = tmp_path / "nope.toml", f"error: board file {tmp_path / 'nope.toml'} does not exist"
    elif case == "folder-not-a-folder":
        boards_path = str(tmp_path / "no-such-folder")
        expected = f"error: {BOARDS_PATH_ENV} names '{boards_path}', which is not a folder"
    elif case == "unknown-id":
        board, expected = "esp32s3n8r8", "error: unknown board 'esp32s3n8r8' (did you mean 'esp32s3_n8r8'"
    elif case == "a-folder":
        (tmp_path / "x.toml").mkdir()
        board, expected = tmp_path / "x.toml", f"error: board file {tmp_path / 'x.toml'} is a folder"
    proc = run_cli("check", MODEL, "--board", board, boards_path=boards_path)
    assert proc.returncode == 2
    assert_no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("error:")]) == 1
    assert lines[-1].startswith(expected), lines[-1]


def test_load_board_api_takes_paths_and_ids(tmp_path, monkeypatch):
    path = my_board(tmp_path / "mine")
    assert load_board(str(path)).id == "my_board"
    monkeypatch.setenv(BOARDS_PATH_ENV, str(tmp_path / "mine"))
    board = load_board("my_board")
    assert (board.origin, board.source) == ("user", str(path))
    monkeypatch.delenv(BOARDS_PATH_ENV)
    with pytest.raises(Exception, match="unknown board 'my_board'"):
        load_board("my_board")
