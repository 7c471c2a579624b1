"""Helpers for the serial-protocol tests: the host-built device, fault-injecting serial proxies,
and the stub model's reference (the same formula as tests/device/stub_model.c).

A plain module rather than conftest.py so test files can import it by a name no other test
folder uses."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.resources import firmware_dir

HERE = Path(__file__).resolve().parent
STUB_MODEL = HERE / "stub_model.c"
STUB_HASH = bytes(range(32))


def stub_reference(x: np.ndarray, outputs: int = 4) -> np.ndarray:
    """out[j] = clamp(in[2j] + in[2j+1] - 3j) for the stub's int8 [1,IN] -> [1,OUT]."""
    pairs = x.astype(np.int32).reshape(-1)[: 2 * outputs].reshape(outputs, 2)
    return np.clip(pairs.sum(axis=1) - 3 * np.arange(outputs), -128, 127).astype(np.int8).reshape(1, outputs)


HOST_DEVICE_SOURCES = [
    "protocol/td_link.c",
    "hal/td_hal_host.c",
    "hal/td_host_main.c",
    "protocol/td_profile.c",  # compiled to nothing unless TD_PROFILE
]
#: A host HAL whose clock steps back at millisecond wraps like the emulated boards' SysTick clock.
GLITCHY_CLOCK_HAL = HERE / "glitchy_clock_hal.c"


def build_host_device(out: Path, sanitize: bool = True, defines: tuple[str, ...] = (),
                      hal: Path | None = None) -> Path:
    """Compile the protocol + host HAL (or ``hal``) + stub model into a native executable."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    fw = firmware_dir()
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    sources = [fw / s for s in HOST_DEVICE_SOURCES]
    if hal is not None:
        sources[1] = hal
    cmd = ["gcc", *flags, *(f"-D{d}" for d in defines), f"-I{fw}", f"-I{fw / 'protocol'}", *map(str, sources),
           str(STUB_MODEL), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@dataclass
class Faults:
    """Per-byte fault probabilities for one direction of the proxy."""

    flip: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    truncate: float = 0.0  # cut the rest of the chunk being forwarded (a frame's tail)
    counts: dict = field(default_factory=lambda: {"flip": 0, "drop": 0, "duplicate": 0, "truncate": 0})

    def apply(self, data: bytes, rng: random.Random) -> bytes:
        out = bytearray()
        for i, byte in enumerate(data):
            roll = rng.random()
            if roll < self.truncate:
                self.counts["truncate"] += 1
                break
            roll -= self.truncate
            if roll < self.drop:
                self.counts["drop"] += 1
                continue
            roll -= self.drop
            if roll < self.flip:
                self.counts["flip"] += 1
                out.append(byte ^ (1 << rng.randrange(8)))
                continue
            roll -= self.flip
            out.append(byte)
            if roll < self.duplicate:
                self.counts["duplicate"] += 1
                out.append(byte)
        return bytes(out)

    def total(self) -> int:
        return sum(self.counts.values())


class HostDevice:
    """The host-built device behind a TCP port (``socket://127.0.0.1:PORT``), with optional faults
    injected in each direction - a serial line between pyserial and the device's stdin/stdout.

    ``before_request(frame_head)`` is called with the start of each chunk sent to the device
    before it is forwarded (tests use it to :meth:`restart` the device at chosen moments)."""

    def __init__(self, exe: Path, to_device: Faults | None = None, to_host: Faults | None = None,
                 seed: int = 1, before_request=None, to_device_bytes_per_s: float | None = None):
        self.exe = exe
        self.to_device = to_device or Faults()
        self.to_host = to_host or Faults()
        self.before_request = before_request
        # a slow line: bytes reach the device in 16-byte pieces at this rate (QEMU's UART: ~30 KB/s)
        self.to_device_bytes_per_s = to_device_bytes_per_s
        self.restarts = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._conn = None
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self.proc = self._spawn()
        threading.Thread(target=self._serve, daemon=True).start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([str(self.exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)

    def restart(self) -> None:
        """Power-cycle the device: a fresh process, all tensors zero, same serial line."""
        old, self.proc = self.proc, self._spawn()
        old.kill()
        old.wait()
        self.restarts += 1
        threading.Thread(target=self._pump_to_host, args=(self.proc,), daemon=True).start()

    def _faulty(self, faults: Faults, data: bytes) -> bytes:
        with self._lock:
            return faults.apply(data, self._rng)

    def _serve(self) -> None:
        self._conn, _ = self._server.accept()
        threading.Thread(target=self._pump_to_host, args=(self.proc,), daemon=True).start()
        try:
            while data := self._conn.recv(4096):
                if self.before_request is not None:
                    self.before_request(self, data[:8])
                self._to_device(self._faulty(self.to_device, data))
        except OSError:
            pass

    def _to_device(self, data: bytes) -> None:
        if not self.to_device_bytes_per_s:
            self.proc.stdin.write(data)
            return
        for at in range(0, len(data), 16):
            self.proc.stdin.write(data[at : at + 16])
            time.sleep(16 / self.to_device_bytes_per_s)

    def _pump_to_host(self, proc: subprocess.Popen) -> None:
        try:
            while data := proc.stdout.read(4096):
                self._conn.sendall(self._faulty(self.to_host, data))
            if proc is self.proc:  # died without a restart: the board is gone, so is the line
                self._conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> str:
        """Stop the device; return its stderr (sanitizer reports land there)."""
        self._server.close()
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


class TcpProxy:
    """A faulty serial line in front of a TCP device (QEMU's UART): pyserial connects to ``url``,
    the proxy forwards to ``backend`` (host, port) with ``to_device`` / ``to_host`` faults."""

    def __init__(self, backend: tuple[str, int], to_device: Faults, to_host: Faults, seed: int = 1):
        self.to_device, self.to_host = to_device, to_host
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._backend = backend
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self._server.accept()
        device = socket.create_connection(self._backend)
        for sock in (client, device):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._pump, args=(device, client, self.to_host), daemon=True).start()
        self._pump(client, device, self.to_device)

    def _pump(self, src: socket.socket, dst: socket.socket, faults: Faults) -> None:
        try:
            while data := src.recv(4096):
                with self._lock:
                    data = faults.apply(data, self._rng)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self._server.close()
