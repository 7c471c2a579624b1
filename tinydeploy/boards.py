"""Board profiles: one TOML file per board in ``boards/``, loaded into frozen dataclasses.

A board profile is data, not code (see DESIGN.md, "Boards are data"): sizes with their source in a
comment, the PlatformIO environment or QEMU machine that runs the firmware, and the serial settings
used to find and talk to the device. Every file is validated field by field when it is loaded, so a
typo in a board file is reported as ``<file>: field 'x' ...`` instead of surfacing later as a
KeyError deep inside the memory check or the renderer.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinydeploy.errors import InputError
from tinydeploy.resources import boards_dir

RUNTIMES = ("tflm", "native")
RUNNERS = ("platformio", "qemu")
UARTS = ("cmsdk", "stellaris")
#: TFLM kernel flavours: TFLM's reference C++, Arm's CMSIS-NN, Espressif's ESP-NN.
TFLM_KERNELS = ("reference", "cmsis_nn", "esp_nn")


@dataclass(frozen=True)
class SerialConfig:
    """How the host finds and talks to the board's serial port."""

    baud: int
    # (vendor id, product id) pairs matched against serial.tools.list_ports; empty when emulated.
    usb_ids: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PlatformIOConfig:
    """The PlatformIO environment of a real board and the pinned TFLM library it builds with."""

    platform: str
    board: str
    framework: str
    lib_deps: tuple[str, ...]
    # Umbrella header of the TFLM library, included by main.cpp so PlatformIO's library finder
    # links the library in (e.g. "TensorFlowLite.h").
    tflm_header: str
    build_flags: tuple[str, ...]


@dataclass(frozen=True)
class TflmConfig:
    """The TFLM library the board's firmware is built with, and the kernels it uses there."""

    library: str     # the library's name (library.properties), e.g. "Arduino_TensorFlowLite"
    kernels: str     # one of TFLM_KERNELS


@dataclass(frozen=True)
class QemuConfig:
    """The QEMU machine of an emulated board and the memory limits its linker script enforces."""

    machine: str
    cpu_flags: tuple[str, ...]  # arm-none-eabi-gcc flags for the core
    uart: str  # "cmsdk" | "stellaris"
    flash_origin: int
    ram_origin: int
    flash_limit: int
    ram_limit: int


@dataclass(frozen=True)
class BoardProfile:
    """Everything tinydeploy knows about one board."""

    id: str
    name: str
    mcu: str
    core: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    framework_flash_bytes: int  # taken by the Arduino core / bootloader / RTOS before our code
    framework_ram_bytes: int
    stack_bytes: int  # reserve kept free for the stack
    default_runtime: str
    default_runner: str
    serial: SerialConfig
    tflm: TflmConfig
    platformio: PlatformIOConfig | None
    qemu: QemuConfig | None
    source: str  # path of the TOML file the profile came from (a str, so asdict() is JSON-ready)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``): USB ids as "VID:PID" hex strings, tuples as lists."""
        data = asdict(self)
        data["serial"]["usb_ids"] = [f"{vid:04X}:{pid:04X}" for vid, pid in self.serial.usb_ids]
        data["flash_available"] = self.flash_available
        data["ram_available"] = self.ram_available
        return _lists(data)

    @property
    def emulated(self) -> bool:
        return self.qemu is not None

    @property
    def flash_available(self) -> int:
        """Flash left for the model and the runtime once the framework is in."""
        return self.flash_bytes - self.framework_flash_bytes

    @property
    def ram_available(self) -> int:
        """RAM left for the arena and the runtime once the framework and the stack reserve are out."""
        return self.ram_bytes - self.framework_ram_bytes - self.stack_bytes


def _lists(value: Any) -> Any:
    """Turn tuples (the frozen dataclasses' sequences) into lists, recursively."""
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return value


# Field tables: name -> expected Python type after tomllib parsing. Lists are checked element-wise.
_TOP_FIELDS: dict[str, Any] = {
    "id": str,
    "name": str,
    "mcu": str,
    "core": str,
    "clock_hz": int,
    "flash_bytes": int,
    "ram_bytes": int,
    "framework_flash_bytes": int,
    "framework_ram_bytes": int,
    "stack_bytes": int,
    "default_runtime": str,
    "default_runner": str,
}
_SERIAL_FIELDS: dict[str, Any] = {"baud": int, "usb_ids": list[str]}
_PLATFORMIO_FIELDS: dict[str, Any] = {
    "platform": str,
    "board": str,
    "framework": str,
    "lib_deps": list[str],
    "tflm_header": str,
    "build_flags": list[str],
}
_QEMU_FIELDS: dict[str, Any] = {
    "machine": str,
    "cpu_flags": list[str],
    "uart": str,
    "flash_origin": int,
    "ram_origin": int,
    "flash_limit": int,
    "ram_limit": int,
}
_TFLM_FIELDS: dict[str, Any] = {"library": str, "kernels": str}
_SECTIONS = {"serial", "tflm", "platformio", "qemu"}


def _bad(path: Path, problem: str) -> InputError:
    return InputError(f"board file {path}: {problem}", "fix the board file; see boards/nano33ble.toml for the format")


def _type_ok(value: Any, expected: Any) -> bool:
    if expected is int:  # bool is an int subclass in Python; a size of `true` is a typo
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    return "a list of strings" if expected == list[str] else {int: "an integer", str: "a string"}[expected]


def _check_table(path: Path, table: dict, fields: dict[str, Any], where: str) -> None:
    """Check that ``table`` has exactly ``fields`` (no more, no fewer) with the right types."""
    prefix = f"[{where}] " if where else ""
    for key in table:
        if key not in fields:
            raise _bad(path, f"{prefix}unknown field '{key}' (known: {', '.join(sorted(fields))})")
    for key, expected in fields.items():
        if key not in table:
            raise _bad(path, f"{prefix}missing field '{key}' ({_type_name(expected)})")
        if not _type_ok(table[key], expected):
            raise _bad(path, f"{prefix}field '{key}' must be {_type_name(expected)}, got {table[key]!r}")


def _parse_usb_id(path: Path, text: str) -> tuple[int, int]:
    """Parse "VID:PID" in hex, as lsusb prints it (e.g. "2341:805A")."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        vid, pid = (int(p, 16) for p in parts)
    except ValueError:
        raise _bad(path, f"[serial] usb_ids entry {text!r} must be 'VID:PID' in hex, e.g. '2341:805A'") from None
    if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
        raise _bad(path, f"[serial] usb_ids entry {text!r} is out of the 16-bit range")
    return vid, pid


def _check_values(path: Path, data: dict) -> None:
    """Cross-field rules: sizes positive and consistent, enumerations, runner sections present."""
    for key in ("clock_hz", "flash_bytes", "ram_bytes"):
        if data[key] <= 0:
            raise _bad(path, f"field '{key}' must be positive, got {data[key]}")
    for key in ("framework_flash_bytes", "framework_ram_bytes", "stack_bytes"):
        if data[key] < 0:
            raise _bad(path, f"field '{key}' must not be negative, got {data[key]}")
    if data["framework_flash_bytes"] >= data["flash_bytes"]:
        raise _bad(path, "field 'framework_flash_bytes' leaves no flash for the model")
    if data["framework_ram_bytes"] + data["stack_bytes"] >= data["ram_bytes"]:
        raise _bad(path, "fields 'framework_ram_bytes' + 'stack_bytes' leave no RAM for the arena")
    if data["default_runtime"] not in RUNTIMES:
        raise _bad(path, f"field 'default_runtime' must be one of {', '.join(RUNTIMES)}")
    runner = data["default_runner"]
    if runner not in RUNNERS:
        raise _bad(path, f"field 'default_runner' must be one of {', '.join(RUNNERS)}")
    if runner not in data:
        raise _bad(path, f"default_runner is '{runner}' but the [{runner}] section is missing")
    for section in ("serial", "tflm"):
        if section not in data:
            raise _bad(path, f"missing section [{section}]")


def _serial(path: Path, table: Any) -> SerialConfig:
    if not isinstance(table, dict):
        raise _bad(path, "[serial] must be a table")
    _check_table(path, table, _SERIAL_FIELDS, "serial")
    if table["baud"] <= 0:
        raise _bad(path, "[serial] field 'baud' must be positive")
    return SerialConfig(baud=table["baud"], usb_ids=tuple(_parse_usb_id(path, t) for t in table["usb_ids"]))


def _tflm(path: Path, table: Any) -> TflmConfig:
    if not isinstance(table, dict):
        raise _bad(path, "[tflm] must be a table")
    _check_table(path, table, _TFLM_FIELDS, "tflm")
    if table["kernels"] not in TFLM_KERNELS:
        raise _bad(path, f"[tflm] field 'kernels' must be one of {', '.join(TFLM_KERNELS)}")
    return TflmConfig(library=table["library"], kernels=table["kernels"])


def _platformio(path: Path, table: Any) -> PlatformIOConfig | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise _bad(path, "[platformio] must be a table")
    _check_table(path, table, _PLATFORMIO_FIELDS, "platformio")
    if not table["lib_deps"]:
        raise _bad(path, "[platformio] lib_deps must name the pinned TFLM library")
    return PlatformIOConfig(
        platform=table["platform"],
        board=table["board"],
        framework=table["framework"],
        lib_deps=tuple(table["lib_deps"]),
        tflm_header=table["tflm_header"],
        build_flags=tuple(table["build_flags"]),
    )


def _qemu(path: Path, table: Any, flash_bytes: int, ram_bytes: int) -> QemuConfig | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise _bad(path, "[qemu] must be a table")
    _check_table(path, table, _QEMU_FIELDS, "qemu")
    if table["uart"] not in UARTS:
        raise _bad(path, f"[qemu] field 'uart' must be one of {', '.join(UARTS)}")
    if table["flash_limit"] != flash_bytes or table["ram_limit"] != ram_bytes:
        raise _bad(path, "[qemu] flash_limit/ram_limit must equal flash_bytes/ram_bytes (the linker script enforces them)")
    return QemuConfig(
        machine=table["machine"],
        cpu_flags=tuple(table["cpu_flags"]),
        uart=table["uart"],
        flash_origin=table["flash_origin"],
        ram_origin=table["ram_origin"],
        flash_limit=table["flash_limit"],
        ram_limit=table["ram_limit"],
    )


def load_board_file(path: Path) -> BoardProfile:
    """Load and validate one board TOML file (also usable for a user's own board file)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read board file {path}: {exc.strerror}", "check the path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _bad(path, f"not valid TOML ({exc})") from None
    _check_table(path, {k: v for k, v in data.items() if k not in _SECTIONS}, _TOP_FIELDS, "")
    _check_values(path, data)
    if data["id"] != path.stem:
        raise _bad(path, f"field 'id' is '{data['id']}' but the file is named '{path.name}'")
    top = {key: data[key] for key in _TOP_FIELDS}
    return BoardProfile(
        **top,
        serial=_serial(path, data["serial"]),
        tflm=_tflm(path, data["tflm"]),
        platformio=_platformio(path, data.get("platformio")),
        qemu=_qemu(path, data.get("qemu"), data["flash_bytes"], data["ram_bytes"]),
        source=str(path),
    )


def board_ids() -> list[str]:
    """Ids of every bundled board, sorted."""
    return sorted(p.stem for p in boards_dir().glob("*.toml"))


def load_board(board_id: str) -> BoardProfile:
    """Load the bundled board ``board_id``; an unknown id is an InputError listing the known ones."""
    known = board_ids()
    if board_id not in known:
        raise InputError(f"unknown board '{board_id}'", f"known: {', '.join(known)}; see 'tinydeploy boards'")
    return load_board_file(boards_dir() / f"{board_id}.toml")


def list_boards() -> list[BoardProfile]:
    """Every bundled board profile, sorted by id."""
    return [load_board_file(boards_dir() / f"{board_id}.toml") for board_id in board_ids()]
