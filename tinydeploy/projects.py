"""Project kinds: which firmware project a board gets, and what goes into its ``src/``.

* ``platformio`` — real boards: a PlatformIO project (tinydeploy.platformio_project) whose
  ``src/`` holds the model files, the protocol, the Arduino HAL and the runtime (the TFLM adapter,
  or the model compiled to C by the native runtime).
* ``baremetal`` — emulated boards: plain C built with arm-none-eabi-gcc (tinydeploy.baremetal),
  startup code, a UART driver and a linker script that enforces the board's flash/RAM limits.

Either way the model-specific files come from tinydeploy.render and the native runtime's C from
tinydeploy.native, so both kinds run the same bytes through the same protocol code.
"""

from __future__ import annotations

from pathlib import Path

from tinydeploy.render import ModelSources, c_identifier, render_model_sources, write_op_resolver


def project_kind(board) -> str:
    return "baremetal" if board.emulated else "platformio"


def render_project(stage: Path, sources: ModelSources, protocol: str = "tinydeploy") -> None:
    src = stage / "src"
    render_model_sources(sources, src)
    if protocol == "eembc":  # the EEMBC benchmark protocol's model settings (tinydeploy.eembc)
        from tinydeploy.eembc import write_config

        write_config(src, sources.analysis, sources.model_name)
    if sources.runtime == "tflm" and project_kind(sources.board) == "baremetal":
        write_op_resolver(src, sources.model_name, sources.analysis.distinct_ops)
    if sources.runtime == "native":
        from tinydeploy import native

        # the arena where the check placed it; the TD_PROFILE step marks (empty in a default build)
        native.compile_model(sources.model_bytes, src, name="model", arena=sources.arena_placement,
                             profile=True)
    if project_kind(sources.board) == "platformio":
        from tinydeploy.platformio_project import render_platformio_project

        render_platformio_project(stage, sources.context() | {
            "model_name": c_identifier(sources.model_name), "protocol": protocol})
    # baremetal: src/ is complete; `tinydeploy flash` links it with the protocol, the board support
    # and, for tflm, the TFLM adapter and the compiled TFLM library (tinydeploy.baremetal).
