"""The ``platformio`` runner: uploads a PlatformIO project to a real board and finds its port.

Upload is ``pio run -d PROJECT -e ENV -t upload [--upload-port P]``. The serial port is the one
given (``--port``) or else the one whose USB vendor/product id matches the board profile's
``usb_ids`` in ``serial.tools.list_ports``; none or several matches are clear errors.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tinydeploy.errors import BuildError, DeviceError, InputError
from tinydeploy.runners.core import Runner, RunnerCaps, RunningDevice

PIO = "pio"


def _system_ports():
    from serial.tools import list_ports

    return list_ports.comports()


def find_port(usb_ids: Iterable[tuple[int, int]], ports: Callable[[], Sequence] = _system_ports) -> str:
    """The one serial port whose USB (vid, pid) is in ``usb_ids``."""
    wanted = set(usb_ids)
    if not wanted:
        raise InputError("this board profile lists no USB ids to find its port by", "pass --port")
    found = sorted(p.device for p in ports() if (p.vid, p.pid) in wanted)
    ids = ", ".join(f"{vid:04X}:{pid:04X}" for vid, pid in sorted(wanted))
    if not found:
        raise DeviceError(f"no connected board with USB id {ids} found",
                          "plug the board in (a data cable, not charge-only) or pass --port")
    if len(found) > 1:
        raise DeviceError(f"several boards with USB id {ids} found: {', '.join(found)}",
                          "choose one with --port")
    return found[0]


@dataclass
class BoardPort(RunningDevice):
    """A real board running its firmware: nothing to stop."""

    port: str

    def stop(self) -> None:
        pass


class PlatformioRunner(Runner):
    name = "platformio"
    capabilities = RunnerCaps(flash=True)
    programs = {PIO: "pip install platformio"}

    def __init__(self, env: str, usb_ids: Iterable[tuple[int, int]] = (), port: str | None = None,
                 ports: Callable[[], Sequence] = _system_ports):
        self.env = env
        self.usb_ids = tuple(usb_ids)
        self.port = port
        self._ports = ports

    @classmethod
    def from_board(cls, board, port: str | None = None, **kwargs) -> PlatformioRunner:
        return cls(board.id, board.serial.usb_ids, port, **kwargs)

    def resolve_port(self) -> str:
        return self.port or find_port(self.usb_ids, self._ports)

    def command(self, project: Path, port: str | None) -> list[str]:
        cmd = [PIO, "run", "-d", str(project), "-e", self.env, "-t", "upload"]
        return cmd + ["--upload-port", port] if port else cmd

    def run(self, firmware: Path) -> BoardPort:
        """Upload the PlatformIO project in ``firmware`` (its directory) and return the board's port."""
        pio = self.require(PIO)
        port = self.resolve_port()
        cmd = self.command(Path(firmware), port)
        result = subprocess.run([pio, *cmd[1:]], capture_output=True, text=True)
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-4:])
            raise BuildError(f"upload to {port} failed: {tail}",
                             "check the cable, press reset or the boot button, or pass --port")
        return BoardPort(port)
