"""Board profiles: one TOML file per board, loaded into frozen dataclasses.

A board profile is data, not code (see DESIGN.md, "Boards are data"): sizes with their source in a
comment, the PlatformIO environment or QEMU machine that runs the firmware, the serial settings used
to find and talk to the device, which runtimes can run on it (and why not, where one cannot), and
the external RAM the board has besides its internal RAM.

Where profiles come from, first found:

- ``--board path/to/board.toml`` (any string ending in ``.toml`` or holding a ``/``): that file;
- the folders in ``$TINYDEPLOY_BOARDS`` (colon-separated, like ``PATH``), in order;
- the bundled ``boards/`` folder.

A user profile with the id of a bundled one replaces it and says so (``BoardProfile.shadows``).

Every file is validated field by field when it is loaded, and every mistake in it is reported, one
line each (:class:`BoardFileError`), instead of surfacing later as a KeyError deep inside the memory
check or the renderer.
"""

from __future__ import annotations

import difflib
import os
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
#: Cores a profile may name (gcc's -mcpu spelling for Arm, "f" for the M4 with its FPU).
CORES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m4f", "cortex-m7", "cortex-m33",
         "xtensa-lx6", "xtensa-lx7", "riscv32-imc", "riscv32-imac", "avr8")
#: External RAM kinds: serial/octal PSRAM behind a cache, or SDRAM on a memory controller (FMC).
EXTERNAL_RAM_KINDS = ("psram", "sdram")
#: How a program puts an object in external RAM: a static object with an attribute (linker
#: section), or a block from an allocator at start-up.
EXTERNAL_RAM_PLACEMENTS = ("static", "heap")
#: The environment variable naming folders of the user's own board files.
BOARDS_PATH_ENV = "TINYDEPLOY_BOARDS"
_FIX = "fix the board file; boards/nano33ble.toml is a complete example"


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
    lib_deps: tuple[str, ...]  # empty where no TFLM library serves the board
    # Umbrella header of the TFLM library, included by main.cpp so PlatformIO's library finder
    # links the library in (e.g. "TensorFlowLite.h"); "" where no TFLM library serves the board.
    tflm_header: str
    build_flags: tuple[str, ...]


@dataclass(frozen=True)
class TflmConfig:
    """The TFLM library the board's firmware is built with, and the kernels it uses there; or, when
    ``available`` is False, why no TFLM library can run on the board (``reason``)."""

    library: str | None  # the library's name (library.properties), e.g. "Arduino_TensorFlowLite"
    kernels: str | None  # one of TFLM_KERNELS
    available: bool = True
    reason: str = ""


@dataclass(frozen=True)
class NativeConfig:
    """Whether tinydeploy's native runtime (the model compiled to C99) can run on the board."""

    available: bool = True
    reason: str = ""


@dataclass(frozen=True)
class ExternalRam:
    """RAM outside the chip's own SRAM (PSRAM, SDRAM) that the board has, and how the framework
    reaches it. ``check`` places an arena there when it does not fit internal RAM."""

    kind: str                 # one of EXTERNAL_RAM_KINDS
    bytes: int                # usable size
    address: int | None       # where it is mapped in the core's address space (None: not fixed)
    optional: bool            # True when the board may be sold/built without it (e.g. solder pads)
    placement: str            # one of EXTERNAL_RAM_PLACEMENTS: how an arena gets there
    attribute: str            # the attribute/macro putting a static object there ("" if none)
    allocator: str            # the call handing out a block of it ("" if none)
    include: str              # header declaring attribute/allocator ("" if none needed)
    # a C statement bringing the memory up before the first allocation ("" if the framework does)
    setup: str
    build_flags: tuple[str, ...]  # flags the build needs so the framework brings it up
    speed: str                # the speed caveat, in words, for the verdict
    source: str               # where the size, address and mechanism come from


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
    native: NativeConfig = NativeConfig()
    external_ram: ExternalRam | None = None
    # True where the toolchain keeps `const` data in RAM (AVR: avr-gcc copies it there at start-up
    # unless it is marked PROGMEM/__flash, which the native runtime's weight arrays are not).
    rodata_in_ram: bool = False
    origin: str = "bundled"  # "bundled" | "user" (a $TINYDEPLOY_BOARDS folder) | "file" (--board PATH)
    shadows: str | None = None  # the bundled profile's path this user profile replaces

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``--json``): USB ids as "VID:PID" hex strings, tuples as lists."""
        data = asdict(self)
        data["serial"]["usb_ids"] = [f"{vid:04X}:{pid:04X}" for vid, pid in self.serial.usb_ids]
        if self.external_ram and self.external_ram.address is not None:
            data["external_ram"]["address"] = f"0x{self.external_ram.address:08X}"
        data["flash_available"] = self.flash_available
        data["ram_available"] = self.ram_available
        data["runtimes"] = list(self.runtimes)
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

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The runtimes that can run on this board, its default first."""
        order = (self.default_runtime, *(r for r in RUNTIMES if r != self.default_runtime))
        return tuple(r for r in order if self.runtime_unavailable(r) is None)

    def runtime_unavailable(self, runtime: str) -> str | None:
        """Why ``runtime`` cannot run on this board, or None when it can."""
        config = {"tflm": self.tflm, "native": self.native}[runtime]
        return None if config.available else config.reason


def _lists(value: Any) -> Any:
    """Turn tuples (the frozen dataclasses' sequences) into lists, recursively."""
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return value


# Field tables: name -> expected Python type after tomllib parsing. Lists are checked element-wise.
# Fields in the *_OPTIONAL tables may be left out (their default is in the loader).
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
_TOP_OPTIONAL: dict[str, Any] = {"rodata_in_ram": bool}
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
_TFLM_OPTIONAL: dict[str, Any] = {"available": bool, "reason": str}
_NATIVE_OPTIONAL: dict[str, Any] = {"available": bool, "reason": str}
_EXTERNAL_RAM_FIELDS: dict[str, Any] = {
    "kind": str,
    "bytes": int,
    "placement": str,
    "speed": str,
    "source": str,
}
_EXTERNAL_RAM_OPTIONAL: dict[str, Any] = {
    "address": int,
    "optional": bool,
    "attribute": str,
    "allocator": str,
    "include": str,
    "setup": str,
    "build_flags": list[str],
}
_SECTIONS = {"serial", "tflm", "native", "platformio", "qemu", "external_ram"}


class BoardFileError(InputError):
    """A board file with one or more mistakes, one line each in ``problems``. One mistake is the
    error line itself; several make a summary line, and ``details`` (which the CLI prints indented
    below its ``error:`` line) lists them."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = tuple(problems)
        self.details = self.problems if len(problems) > 1 else ()
        if len(problems) == 1:
            summary = f"board file {path}: {problems[0]}"
        else:
            summary = f"board file {path} has {len(problems)} mistakes"
        super().__init__(summary, _FIX)

    def __reduce__(self):
        return (self.__class__, (self.path, list(self.problems)))


class _Problems:
    """Collects every mistake of one board file, in file order, one line each."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def raise_any(self) -> None:
        if self.lines:
            raise BoardFileError(self.path, self.lines)


def _type_ok(value: Any, expected: Any) -> bool:
    if expected is int:  # bool is an int subclass in Python; a size of `true` is a typo
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    if expected == list[str]:
        return "a list of strings"
    return {int: "an integer", str: "a string", bool: "true or false"}[expected]


def _check_table(problems: _Problems, table: dict, fields: dict[str, Any], where: str,
                 optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``table`` against ``fields`` (required) and ``optional``; report unknown, missing and
    mistyped fields. Returns the fields whose values have the right type."""
    optional = optional or {}
    known = fields | optional
    prefix = f"[{where}] " if where else ""
    good: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
            problems.add(f"{prefix}unknown field '{key}' ({hint})")
        elif not _type_ok(value, known[key]):
            problems.add(f"{prefix}field '{key}' must be {_type_name(known[key])}, got {value!r}")
        else:
            good[key] = value
    for key, expected in fields.items():
        if key not in table:
            problems.add(f"{prefix}missing field '{key}' ({_type_name(expected)})")
    return good


def _parse_usb_id(text: str) -> tuple[int, int] | str:
    """Parse "VID:PID" in hex, as lsusb prints it (e.g. "2341:805A"); a problem line if it is not."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        vid, pid = (int(p, 16) for p in parts)
    except ValueError:
        return f"[serial] usb_ids entry {text!r} must be 'VID:PID' in hex, e.g. '2341:805A'"
    if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
        return f"[serial] usb_ids entry {text!r} is out of the 16-bit range"
    return vid, pid


def _one_of(problems: _Problems, table: dict, key: str, choices: tuple[str, ...], where: str = "") -> None:
    value = table.get(key)
    if isinstance(value, str) and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        prefix = f"[{where}] " if where else ""
        problems.add(f"{prefix}field '{key}' is '{value}' but must be one of {', '.join(choices)}{hint}")


def _section(problems: _Problems, data: dict, name: str) -> dict | None:
    """The table ``[name]`` of the file, None if absent; a problem if it is not a table."""
    table = data.get(name)
    if table is None:
        return None
    if not isinstance(table, dict):
        problems.add(f"[{name}] must be a table, got {table!r}")
        return None
    return table


def _top(problems: _Problems, path: Path, data: dict) -> dict[str, Any]:
    top = _check_table(problems, {k: v for k, v in data.items() if k not in _SECTIONS},
                       _TOP_FIELDS, "", _TOP_OPTIONAL)
    for key in ("clock_hz", "flash_bytes", "ram_bytes"):
        if key in top and top[key] <= 0:
            problems.add(f"field '{key}' must be positive, got {top[key]}")
    for key in ("framework_flash_bytes", "framework_ram_bytes", "stack_bytes"):
        if key in top and top[key] < 0:
            problems.add(f"field '{key}' must not be negative, got {top[key]}")
    if {"framework_flash_bytes", "flash_bytes"} <= top.keys() and top["flash_bytes"] > 0:
        if top["framework_flash_bytes"] >= top["flash_bytes"]:
            problems.add(f"field 'framework_flash_bytes' ({top['framework_flash_bytes']:,}) leaves no "
                         f"flash for the model (flash_bytes is {top['flash_bytes']:,})")
    if {"framework_ram_bytes", "stack_bytes", "ram_bytes"} <= top.keys() and top["ram_bytes"] > 0:
        if top["framework_ram_bytes"] + top["stack_bytes"] >= top["ram_bytes"]:
            problems.add(f"fields 'framework_ram_bytes' + 'stack_bytes' "
                         f"({top['framework_ram_bytes'] + top['stack_bytes']:,}) leave no RAM for "
                         f"the arena (ram_bytes is {top['ram_bytes']:,})")
    _one_of(problems, top, "core", CORES)
    _one_of(problems, top, "default_runtime", RUNTIMES)
    _one_of(problems, top, "default_runner", RUNNERS)
    if "id" in top:
        if top["id"] != path.stem:
            problems.add(f"field 'id' is '{top['id']}' but the file is named '{path.name}' "
                         f"(name it {top['id']}.toml, or set id = \"{path.stem}\")")
        elif not top["id"] or any(ch.isspace() or ch in "/\\:" for ch in top["id"]):
            problems.add(f"field 'id' '{top['id']}' must be non-empty, without spaces, '/', '\\' or ':'")
    return top


def _serial(problems: _Problems, data: dict) -> SerialConfig | None:
    table = _section(problems, data, "serial")
    if table is None:
        if "serial" not in data:
            problems.add("missing section [serial] (baud, usb_ids)")
        return None
    good = _check_table(problems, table, _SERIAL_FIELDS, "serial")
    if "baud" in good and good["baud"] <= 0:
        problems.add(f"[serial] field 'baud' must be positive, got {good['baud']}")
    ids = []
    for text in good.get("usb_ids", []):
        parsed = _parse_usb_id(text)
        if isinstance(parsed, str):
            problems.add(parsed)
        else:
            ids.append(parsed)
    if len(good) != len(_SERIAL_FIELDS):
        return None
    return SerialConfig(baud=good["baud"], usb_ids=tuple(ids))


def _tflm(problems: _Problems, data: dict) -> TflmConfig | None:
    table = _section(problems, data, "tflm")
    if table is None:
        if "tflm" not in data:
            problems.add("missing section [tflm] (library and kernels, or available = false and "
                         "the reason)")
        return None
    available = table.get("available", True)
    # A board no TFLM library serves names no library: only the reason is required then.
    required = _TFLM_FIELDS if available is not False else {}
    good = _check_table(problems, table, required, "tflm", _TFLM_OPTIONAL | _TFLM_FIELDS)
    _one_of(problems, good, "kernels", TFLM_KERNELS, "tflm")
    if available is False and not good.get("reason", "").strip():
        problems.add("[tflm] available = false needs a 'reason' saying why no TFLM library runs here")
    if available is not False and not all(k in good for k in _TFLM_FIELDS):
        return None
    return TflmConfig(library=good.get("library"), kernels=good.get("kernels"),
                      available=good.get("available", True), reason=good.get("reason", ""))


def _native(problems: _Problems, data: dict) -> NativeConfig:
    table = _section(problems, data, "native")
    if table is None:
        return NativeConfig()
    good = _check_table(problems, table, {}, "native", _NATIVE_OPTIONAL)
    if good.get("available") is False and not good.get("reason", "").strip():
        problems.add("[native] available = false needs a 'reason' saying why the native runtime "
                     "cannot run here")
    return NativeConfig(available=good.get("available", True), reason=good.get("reason", ""))


def _platformio(problems: _Problems, data: dict, tflm: TflmConfig | None) -> PlatformIOConfig | None:
    table = _section(problems, data, "platformio")
    if table is None:
        return None
    good = _check_table(problems, table, _PLATFORMIO_FIELDS, "platformio")
    for key in ("platform", "board", "framework"):
        if key in good and not good[key].strip():
            problems.add(f"[platformio] field '{key}' must not be empty")
    if tflm is not None and tflm.available:
        if "lib_deps" in good and not good["lib_deps"]:
            problems.add("[platformio] lib_deps must name the pinned TFLM library (the board's "
                         "[tflm] says one serves it)")
        if "tflm_header" in good and not good["tflm_header"].endswith(".h"):
            problems.add(f"[platformio] field 'tflm_header' must name the TFLM library's header "
                         f"(e.g. 'TensorFlowLite.h'), got {good['tflm_header']!r}")
    if len(good) != len(_PLATFORMIO_FIELDS):
        return None
    return PlatformIOConfig(
        platform=good["platform"],
        board=good["board"],
        framework=good["framework"],
        lib_deps=tuple(good["lib_deps"]),
        tflm_header=good["tflm_header"],
        build_flags=tuple(good["build_flags"]),
    )


def _qemu(problems: _Problems, data: dict, top: dict) -> QemuConfig | None:
    table = _section(problems, data, "qemu")
    if table is None:
        return None
    good = _check_table(problems, table, _QEMU_FIELDS, "qemu")
    _one_of(problems, good, "uart", UARTS, "qemu")
    for limit, size in (("flash_limit", "flash_bytes"), ("ram_limit", "ram_bytes")):
        if limit in good and size in top and good[limit] != top[size]:
            problems.add(f"[qemu] field '{limit}' ({good[limit]:,}) must equal '{size}' "
                         f"({top[size]:,}): the linker script enforces it")
    if len(good) != len(_QEMU_FIELDS):
        return None
    return QemuConfig(
        machine=good["machine"],
        cpu_flags=tuple(good["cpu_flags"]),
        uart=good["uart"],
        flash_origin=good["flash_origin"],
        ram_origin=good["ram_origin"],
        flash_limit=good["flash_limit"],
        ram_limit=good["ram_limit"],
    )


def _external_ram(problems: _Problems, data: dict, emulated: bool) -> ExternalRam | None:
    table = _section(problems, data, "external_ram")
    if table is None:
        return None
    good = _check_table(problems, table, _EXTERNAL_RAM_FIELDS, "external_ram", _EXTERNAL_RAM_OPTIONAL)
    _one_of(problems, good, "kind", EXTERNAL_RAM_KINDS, "external_ram")
    _one_of(problems, good, "placement", EXTERNAL_RAM_PLACEMENTS, "external_ram")
    if "bytes" in good and good["bytes"] <= 0:
        problems.add(f"[external_ram] field 'bytes' must be positive, got {good['bytes']}")
    if "address" in good and not 0 <= good["address"] <= 0xFFFF_FFFF:
        problems.add(f"[external_ram] field 'address' must be a 32-bit address, got {good['address']:#x}")
    placement = good.get("placement")
    if placement == "static" and not good.get("attribute", "").strip():
        problems.add("[external_ram] placement = \"static\" needs the 'attribute' that puts a "
                     "static object there (e.g. 'EXTMEM')")
    if placement == "heap" and not good.get("allocator", "").strip():
        problems.add("[external_ram] placement = \"heap\" needs the 'allocator' that hands out a "
                     "block of it (e.g. 'ps_malloc')")
    if good.get("setup", "").strip() and placement != "heap":
        problems.add("[external_ram] 'setup' runs before the allocator: it needs placement = \"heap\"")
    if emulated and "address" not in good:
        problems.add("[external_ram] an emulated board's external RAM needs its 'address' "
                     "(the linker script places the section there)")
    for key in ("speed", "source"):
        if key in good and not good[key].strip():
            problems.add(f"[external_ram] field '{key}' must not be empty")
    if not all(k in good for k in _EXTERNAL_RAM_FIELDS):
        return None
    return ExternalRam(
        kind=good["kind"], bytes=good["bytes"], address=good.get("address"),
        optional=good.get("optional", False), placement=good["placement"],
        attribute=good.get("attribute", ""), allocator=good.get("allocator", ""),
        include=good.get("include", ""), setup=good.get("setup", ""),
        build_flags=tuple(good.get("build_flags", [])),
        speed=good["speed"], source=good["source"],
    )


def _cross_checks(problems: _Problems, top: dict, tflm: TflmConfig | None, native: NativeConfig,
                  data: dict) -> None:
    runner = top.get("default_runner")
    if runner in RUNNERS and runner not in data:
        problems.add(f"default_runner is '{runner}' but the [{runner}] section is missing")
    if "platformio" in data and "qemu" in data:
        problems.add("a board has either a [platformio] or a [qemu] section, not both")
    runtime = top.get("default_runtime")
    reasons = {"tflm": tflm.reason if tflm and not tflm.available else None,
               "native": native.reason if not native.available else None}
    other = "native" if runtime == "tflm" else "tflm"
    # A board may list no runnable runtime at all (its profile then documents why, and `check`
    # says so); otherwise the default must be one that runs.
    if runtime in RUNTIMES and reasons[runtime] is not None and reasons[other] is None:
        problems.add(f"default_runtime is '{runtime}' but [{runtime}] says it is not available "
                     f"here; use '{other}'")


def load_board_file(path: Path | str, origin: str = "file") -> BoardProfile:
    """Load and validate one board TOML file; every mistake in it is reported at once
    (:class:`BoardFileError`, one line per mistake in ``details``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"board file {path} does not exist",
                         "check the path; 'tinydeploy boards' lists the known ids") from None
    except IsADirectoryError:
        raise InputError(f"board file {path} is a folder",
                         "give a .toml file, or put the folder in $TINYDEPLOY_BOARDS") from None
    except OSError as exc:
        raise InputError(f"cannot read board file {path}: {exc.strerror}", "check the path") from None
    except UnicodeDecodeError as exc:
        raise BoardFileError(path, [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardFileError(path, [f"not valid TOML ({exc})"]) from None
    problems = _Problems(path)
    top = _top(problems, path, data)
    serial = _serial(problems, data)
    tflm = _tflm(problems, data)
    native = _native(problems, data)
    platformio = _platformio(problems, data, tflm)
    qemu = _qemu(problems, data, top)
    external_ram = _external_ram(problems, data, emulated="qemu" in data)
    _cross_checks(problems, top, tflm, native, data)
    problems.raise_any()
    return BoardProfile(
        **{key: top[key] for key in _TOP_FIELDS},
        serial=serial,
        tflm=tflm,
        platformio=platformio,
        qemu=qemu,
        source=str(path),
        native=native,
        external_ram=external_ram,
        rodata_in_ram=top.get("rodata_in_ram", False),
        origin=origin,
    )


# ----------------------------------------------------------------------------- finding profiles

def user_board_dirs() -> list[Path]:
    """The folders named by $TINYDEPLOY_BOARDS (colon-separated, empty entries skipped); a name
    that is not a folder is an error naming it."""
    folders = []
    for entry in os.environ.get(BOARDS_PATH_ENV, "").split(os.pathsep):
        if not entry:
            continue
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise InputError(f"{BOARDS_PATH_ENV} names '{entry}', which is not a folder",
                             f"create it, or remove it from {BOARDS_PATH_ENV} (folders of board "
                             f".toml files, separated by '{os.pathsep}')")
        folders.append(folder)
    return folders


def _board_files() -> dict[str, tuple[Path, str, Path | None]]:
    """id -> (file, origin, bundled file it shadows): user folders first (in order), then bundled."""
    bundled = {p.stem: p for p in sorted(boards_dir().glob("*.toml"))}
    found: dict[str, tuple[Path, str, Path | None]] = {}
    for folder in user_board_dirs():
        for path in sorted(folder.glob("*.toml")):
            if path.stem not in found:
                found[path.stem] = (path, "user", bundled.get(path.stem))
    for board_id, path in bundled.items():
        found.setdefault(board_id, (path, "bundled", None))
    return found


def board_ids() -> list[str]:
    """Ids of every known board (bundled and from $TINYDEPLOY_BOARDS), sorted."""
    return sorted(_board_files())


def is_board_path(board: str) -> bool:
    """Does the --board value name a file rather than an id?"""
    return board.endswith(".toml") or "/" in board or os.sep in board


def _load(path: Path, origin: str, shadows: Path | None) -> BoardProfile:
    import dataclasses

    profile = load_board_file(path, origin)
    return dataclasses.replace(profile, shadows=str(shadows)) if shadows else profile


def load_board(board: str) -> BoardProfile:
    """The profile named by ``board``: a path to a board file, or an id (from $TINYDEPLOY_BOARDS,
    then the bundled ones). An unknown id is an InputError suggesting the closest ids."""
    if is_board_path(board):
        path = Path(board).expanduser()
        bundled = boards_dir() / f"{path.stem}.toml"
        shadows = bundled if bundled.is_file() and bundled.resolve() != path.resolve() else None
        return _load(path, "file", shadows)
    files = _board_files()
    if board not in files:
        raise unknown_board(board, sorted(files))
    return _load(*files[board])


def unknown_board(board: str, known: list[str]) -> InputError:
    close = difflib.get_close_matches(board, known, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? 'tinydeploy boards' lists all {len(known)}"
    else:
        hint = f"known: {', '.join(known)}; see 'tinydeploy boards'"
    return InputError(f"unknown board '{board}'",
                      f"{hint}; or give a board file: --board path/to/board.toml")


def list_boards() -> list[BoardProfile]:
    """Every known board profile (bundled and from $TINYDEPLOY_BOARDS), sorted by id."""
    return [_load(*entry) for _, entry in sorted(_board_files().items())]
