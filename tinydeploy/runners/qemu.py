"""The ``qemu`` runner: boots an emulated-board ELF in ``qemu-system-arm``.

The firmware's UART0 becomes a TCP server on 127.0.0.1 (``-serial tcp:...,server=on,wait=on``):
QEMU notices a pty reader only about once a second, a socket at once; ``nodelay=on`` because
Nagle's algorithm against the host's delayed ACKs costs ~40 ms per exchange. ``-icount shift=0`` ties
virtual time to executed instructions (1 ns each), so the device's timer readings are the same
on every run and every host. Semihosting is on so the firmware can end the emulation with an exit
status (startup.c does on a CPU fault).

QEMU is always stopped: by the context manager, at interpreter exit (atexit), by a watchdog after
``max_seconds``, and by the kernel when the process that started it dies in any way (SIGKILL
included): QEMU is started with the parent-death signal set to SIGKILL (Linux ``prctl``).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import sys
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tinydeploy.errors import DeviceError, InputError
from tinydeploy.runners.core import Runner, RunnerCaps, RunningDevice

QEMU = "qemu-system-arm"
_PORT_ATTEMPTS = 3
#: What QEMU prints once a server chardev with wait=on listens.
_LISTENING = "QEMU waiting for connection on"


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGKILL when the thread that started it ends (the parent
    process dying, for a CLI). If the parent is already gone, end at once."""
    def preexec() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def free_tcp_port() -> int:
    """A port nobody listens on right now (QEMU binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuDevice(RunningDevice):
    """A running QEMU; ``port`` is the pyserial URL of the firmware's UART."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, max_seconds: float | None):
        self.proc = proc
        self.port = f"socket://127.0.0.1:{port}"
        self.tcp_port = port
        self.log_path = log_path
        self._log_text: str | None = None  # kept once the log file is removed at stop()
        self.open_timeout = 5.0
        self._watchdog = None
        if max_seconds is not None:
            self._watchdog = threading.Timer(max_seconds, self._kill)
            self._watchdog.daemon = True
            self._watchdog.start()
        atexit.register(self.stop)

    @property
    def exit_code(self) -> int | None:
        """QEMU's exit status (the firmware's, through semihosting) or None while it runs."""
        return self.proc.poll()

    def log(self) -> str:
        """What QEMU (and the firmware through semihosting) printed."""
        if self._log_text is not None:
            return self._log_text
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, timeout: float) -> int:
        """Wait for the firmware to end the emulation; DeviceError if it does not in time."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"the emulated board did not stop within {timeout:g} s",
                              "the firmware should exit through semihosting") from None

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._kill()
        if self._log_text is None:
            self._log_text = self.log()
            self.log_path.unlink(missing_ok=True)
        atexit.unregister(self.stop)


class QemuRunner(Runner):
    name = "qemu"
    capabilities = RunnerCaps(emulate=True)
    programs = {QEMU: "install the Debian package qemu-system-arm"}

    def __init__(self, machine: str, *, start_timeout: float = 10.0, max_seconds: float | None = 3600.0):
        self.machine = machine
        self.start_timeout = start_timeout
        self.max_seconds = max_seconds

    @classmethod
    def from_board(cls, board, **kwargs) -> QemuRunner:
        if board.qemu is None:
            raise InputError(f"board {board.id} is not emulated", "the qemu runner needs a qemu-* board")
        return cls(board.qemu.machine, **kwargs)

    def command(self, elf: Path, port: int) -> list[str]:
        return [
            QEMU, "-M", self.machine, "-nographic", "-monitor", "none",
            "-icount", "shift=0",
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
            "-semihosting-config", "enable=on,target=native",
            "-kernel", str(elf),
        ]

    def run(self, firmware: Path) -> QemuDevice:
        """Boot ``firmware`` (an ELF) and return once its UART listens; the guest starts running
        when the first client (a DeviceLink) connects."""
        self.require(QEMU)
        if not Path(firmware).is_file():
            raise InputError(f"firmware {firmware} does not exist", "build it first")
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            device = self._start(Path(firmware))
            try:
                self._wait_listening(device)
                return device
            except DeviceError:
                device.stop()
                # another program took the free port between our probe and QEMU's bind: retry
                if attempt == _PORT_ATTEMPTS or "Address already in use" not in device.log():
                    raise

    def _start(self, firmware: Path) -> QemuDevice:
        port = free_tcp_port()
        log = Path(tempfile.mkstemp(prefix="tinydeploy-qemu-", suffix=".log")[1])
        with open(log, "wb") as out:
            proc = subprocess.Popen(self.command(firmware, port), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=die_with_parent(os.getpid()))
        return QemuDevice(proc, port, log, self.max_seconds)

    def _wait_listening(self, device: QemuDevice) -> None:
        """Wait until QEMU says its serial socket is listening ("QEMU waiting for connection on"),
        which, unlike a probe connection, cannot be fooled by another program on the same port."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if device.exit_code is not None:
                tail = " | ".join(device.log().strip().splitlines()[-3:])
                raise DeviceError(f"{QEMU} exited with status {device.exit_code} at start-up: {tail}",
                                  "check the firmware ELF and the QEMU machine name")
            if _LISTENING in device.log():
                return
            time.sleep(0.02)
        raise DeviceError(f"{QEMU} did not open its serial port within {self.start_timeout:g} s",
                          "the machine may be overloaded; try again")
