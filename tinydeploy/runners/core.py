"""The runner interface, after Zephyr's west runners (scripts/west_commands/runners/core.py).

A runner knows one way of getting firmware running on a board and of reaching its serial port:
``qemu`` boots an ELF in an emulator, ``platformio`` uploads to a real board. Each is one small
class with a ``name``, the ``capabilities`` it offers, the external ``programs`` it needs (and the
package that provides each), and a single entry point, :meth:`Runner.run`, which returns a
:class:`RunningDevice` context manager: the firmware is running while it is open and is stopped
(where that means anything) when it closes. Adding a runner never touches the pipeline.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tinydeploy.errors import ToolMissingError


@dataclass(frozen=True)
class RunnerCaps:
    """What a runner can do."""

    flash: bool = False  # writes firmware to a real board's flash
    emulate: bool = False  # runs the firmware in an emulator
    serial: bool = True  # gives access to the firmware's serial port


class RunningDevice(ABC):
    """Firmware that is running now, reachable at ``port`` (a path or a pyserial URL).

    Use as a context manager; ``stop()`` is idempotent.
    """

    port: str
    #: Seconds a serial connection may take to come up (an emulator still starting).
    open_timeout: float = 0.0

    def __enter__(self) -> RunningDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @abstractmethod
    def stop(self) -> None:
        """Stop the firmware if the runner started it (an emulator); no-op for real boards."""


class Runner(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[RunnerCaps]
    #: program -> how to install it (shown in the ToolMissingError)
    programs: ClassVar[dict[str, str]]

    @classmethod
    def require(cls, program: str) -> str:
        """Absolute path of ``program``, or a ToolMissingError naming what to install."""
        path = shutil.which(program)
        if path is None:
            raise ToolMissingError(f"{program} is not installed (needed by the {cls.name} runner)",
                                   cls.programs.get(program, f"install {program}"))
        return path

    @abstractmethod
    def run(self, firmware: Path) -> RunningDevice:
        """Get ``firmware`` running (boot or upload it) and return the running device."""
