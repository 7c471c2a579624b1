"""Render a complete PlatformIO project for a real board (the "platformio" project kind).

``render_platformio_project(out_dir, context)`` writes, into ``out_dir``:

- ``platformio.ini`` — one env for the board: platform, board, framework, the pinned TFLM library in
  ``lib_deps``, build flags and ``monitor_speed`` from the board profile;
- ``src/main.cpp`` — Arduino ``setup()``/``loop()`` that start the HAL and the runtime and then serve
  the serial protocol for ever;
- for the tflm runtime, ``src/op_resolver.h``: a ``MicroMutableOpResolver<N>`` registering exactly
  the model's distinct ops;
- copies of the hand-written firmware the project compiles: ``td_runtime.h``, ``td_hal.h``, the
  protocol (``firmware/protocol``), the Arduino HAL and, for tflm, the TFLM runtime adapter.

All files go flat into ``src/`` so every ``#include "x.h"`` between them resolves without extra
include paths. The caller (the build stage) writes the model files next to them: ``model_data.h``/
``model_data.cc`` (with the generic names ``TD_MODEL_DATA``/``TD_MODEL_DATA_LEN`` the TFLM adapter
uses), ``model_settings.h`` (``TD_ARENA_BYTES``) and ``model_info.c`` (``td_model_info``).

Real-board builds cannot run on tinydeploy's CI machine: ``pio run`` must download the platform,
toolchain and libraries. What is checked offline is that ``pio project config`` accepts the project
and that the C/C++ files compile against stub TFLM/Arduino headers (tests/stubs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from tinydeploy.boards import BoardProfile
from tinydeploy.errors import InputError
from tinydeploy.resources import firmware_dir, templates_dir
from tinydeploy.render import write_op_resolver
from tinydeploy.tflm_ops import RESOLVER_METHODS as TFLM_RESOLVER_METHODS
from tinydeploy.tflm_ops import resolver_calls  # noqa: F401 - part of this module's API


# Context keys the templates use; render_platformio_project refuses a context missing any of them.
REQUIRED_CONTEXT = ("board", "model_name", "runtime", "ops", "arena_bytes", "model_hash_hex")

# Hand-written firmware copied into src/: (folder under firmware/, file patterns).
_COMMON_FIRMWARE = (("", ("td_runtime.h", "td_hal.h")), ("protocol", ("*.h", "*.c")), ("hal", ("td_hal_arduino.cpp",)))
_RUNTIME_FIRMWARE = {
    # Only the runtime adapter: firmware/tflm also holds host and measurement tools, not firmware.
    "tflm": (("tflm", ("td_runtime_tflm.cc",)),),
    # The native runtime's C (model.c + only the kernels it calls) is written by tinydeploy.native.
    "native": (),
}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir() / "platformio"),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string
        keep_trailing_newline=True,
        autoescape=False,
    )


# With --protocol eembc the EEMBC benchmark server (firmware/eembc) replaces tinydeploy's protocol.
_EEMBC_FIRMWARE = (("", ("td_runtime.h", "td_hal.h")), ("eembc", ("td_eembc.c", "td_eembc.h")),
                   ("hal", ("td_hal_arduino.cpp",)))


def _firmware_files(runtime: str, protocol: str = "tinydeploy") -> list[Path]:
    """Every hand-written firmware file the project needs; each folder must contribute some."""
    root = firmware_dir()
    files: list[Path] = []
    common = _EEMBC_FIRMWARE if protocol == "eembc" else _COMMON_FIRMWARE
    for folder, patterns in common + _RUNTIME_FIRMWARE[runtime]:
        matches = sorted({path for pattern in patterns for path in (root / folder).glob(pattern)})
        if not matches:
            raise FileNotFoundError(f"firmware/{folder} ({', '.join(patterns)}) is missing from this installation")
        files.extend(matches)
    return files


def _check_context(context: dict[str, Any]) -> BoardProfile:
    missing = [key for key in REQUIRED_CONTEXT if key not in context]
    if missing:
        raise TypeError(f"render_platformio_project: context lacks {', '.join(missing)}")
    board = context["board"]
    if board.platformio is None:
        raise InputError(
            f"board '{board.id}' has no PlatformIO environment",
            f"it runs with the '{board.default_runner}' runner; build it as that project kind",
        )
    if context["runtime"] not in _RUNTIME_FIRMWARE:
        raise InputError(f"unknown runtime '{context['runtime']}'", "use tflm or native")
    return board


def render_platformio_project(out_dir: Path, context: dict[str, Any]) -> list[Path]:
    """Render the PlatformIO project into ``out_dir``; return the files written (absolute paths).

    ``context`` holds at least REQUIRED_CONTEXT: ``board`` (BoardProfile with a [platformio]
    section), ``model_name`` (shown in comments), ``runtime`` ("tflm" | "native"),
    ``ops`` (the model's TFLite op names, repeats allowed), ``arena_bytes`` and ``model_hash_hex``.
    Extra keys (input_specs, output_specs, ...) are passed through to the templates.
    """
    board = _check_context(context)
    out_dir = Path(out_dir)
    src = out_dir / "src"
    src.mkdir(parents=True, exist_ok=True)

    variables = dict(context, pio=board.platformio, env_name=board.id,
                     protocol=context.get("protocol", "tinydeploy"))
    outputs = {"platformio.ini": "platformio.ini.j2", "src/main.cpp": "src/main.cpp.j2"}

    env = _environment()
    written: list[Path] = []
    for relative, template in outputs.items():
        target = out_dir / relative
        target.write_text(env.get_template(template).render(**variables), encoding="utf-8")
        written.append(target.resolve())
    if context["runtime"] == "tflm":
        written.append(write_op_resolver(src, context["model_name"], list(context["ops"])).resolve())
    for source in _firmware_files(context["runtime"], variables["protocol"]):
        target = src / source.name
        target.write_bytes(source.read_bytes())
        written.append(target.resolve())
    return written
