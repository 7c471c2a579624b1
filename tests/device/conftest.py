"""Fixtures for the serial-protocol tests: a host-built device, a fault-injecting serial proxy,
and the stub model's reference (the same formula as tests/device/stub_model.c)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.resources import firmware_dir

HERE = Path(__file__).resolve().parent
STUB_MODEL = HERE / "stub_model.c"
STUB_HASH = bytes(range(32))


def stub_reference(x: np.ndarray) -> np.ndarray:
    """out[j] = clamp(in[2j] + in[2j+1] - 3j) for the stub's int8 [1,8] -> [1,4]."""
    flat = x.astype(np.int32).reshape(4, 2)
    return np.clip(flat.sum(axis=1) - 3 * np.arange(4), -128, 127).astype(np.int8).reshape(1, 4)


HOST_DEVICE_SOURCES = [
    "protocol/td_link.c",
    "hal/td_hal_host.c",
    "hal/td_host_main.c",
]


def build_host_device(out: Path, sanitize: bool = True) -> Path:
    """Compile the protocol + host HAL + stub model into a native executable."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    fw = firmware_dir()
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    cmd = ["gcc", *flags, f"-I{fw}", f"-I{fw / 'protocol'}", *(str(fw / s) for s in HOST_DEVICE_SOURCES),
           str(STUB_MODEL), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def host_device_exe(tmp_path_factory) -> Path:
    return build_host_device(tmp_path_factory.mktemp("hostdev") / "td_host_device")


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
    injected in each direction - a serial line between pyserial and the device's stdin/stdout."""

    def __init__(self, exe: Path, to_device: Faults | None = None, to_host: Faults | None = None, seed: int = 1):
        self.to_device = to_device or Faults()
        self.to_host = to_host or Faults()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _faulty(self, faults: Faults, data: bytes) -> bytes:
        with self._lock:
            return faults.apply(data, self._rng)

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        threading.Thread(target=self._pump_to_host, args=(conn,), daemon=True).start()
        try:
            while data := conn.recv(4096):
                self.proc.stdin.write(self._faulty(self.to_device, data))
        except OSError:
            pass

    def _pump_to_host(self, conn: socket.socket) -> None:
        try:
            while data := self.proc.stdout.read(4096):
                conn.sendall(self._faulty(self.to_host, data))
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


@pytest.fixture
def host_device(host_device_exe):
    devices = []

    def start(**kwargs) -> HostDevice:
        devices.append(HostDevice(host_device_exe, **kwargs))
        return devices[-1]

    yield start
    for dev in devices:
        dev.stop()
