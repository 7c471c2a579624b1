"""Reliability: a lossy line never yields a wrong result, and a dead or absent device yields a
clear DeviceError within a bounded time."""

from __future__ import annotations

import random
import socket
import threading
import time

import numpy as np
import pytest

from tinydeploy.errors import DeviceError
from tinydeploy.link import DeviceLink

from conftest import Faults, stub_reference


def test_faulty_line_never_yields_a_wrong_result(host_device):
    # ~1 fault per 150 bytes each way: most exchanges are clean, many are hit.
    dev = host_device(
        to_device=Faults(flip=0.002, drop=0.002, duplicate=0.002, truncate=0.001),
        to_host=Faults(flip=0.002, drop=0.002, duplicate=0.002, truncate=0.001),
        seed=7,
    )
    rng = np.random.default_rng(7)
    correct = reported = 0
    with DeviceLink(dev.url, timeout=0.3, invoke_timeout=0.3, attempts=8) as link:
        link.hello()
        for _ in range(250):
            x = rng.integers(-128, 128, size=(1, 8), dtype=np.int8)
            try:
                (y,), _ = link.run([x])
            except DeviceError:
                reported += 1
                continue
            np.testing.assert_array_equal(y, stub_reference(x))  # never a corrupted result
            correct += 1
        resends = link.resends
    faults = dev.to_device.total() + dev.to_host.total()
    kinds = {k for f in (dev.to_device, dev.to_host) for k, n in f.counts.items() if n}
    assert kinds == {"flip", "drop", "duplicate", "truncate"}
    assert faults >= 30
    assert resends >= faults // 4  # faults were noticed and the exchange repeated
    print(faults, resends, correct, reported, dev.to_device.counts, dev.to_host.counts)
    assert correct >= 240, (correct, reported)


def _silent_server(talk: bool):
    """A TCP 'device' that accepts and then never answers (or answers only random garbage)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        rng = random.Random(3)
        conn.settimeout(0.05)
        while True:
            try:
                if conn.recv(4096) == b"":
                    return
            except TimeoutError:
                pass
            except OSError:
                return
            if talk:
                try:
                    conn.sendall(rng.randbytes(200).replace(b"\xa5", b"\xa5\x5a"))
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("talk", [False, True], ids=["silent", "garbage"])
def test_unresponsive_device_fails_within_bounded_time(talk):
    server = _silent_server(talk)
    port = server.getsockname()[1]
    start = time.monotonic()
    with DeviceLink(f"socket://127.0.0.1:{port}", timeout=0.3, attempts=3) as link:
        with pytest.raises(DeviceError, match="no valid answer .* HELLO after 3 attempts"):
            link.hello()
    assert time.monotonic() - start < 3 * 0.3 + 1.0
    server.close()


@pytest.mark.parametrize("port", ["/dev/ttyTINYDEPLOY_NONE", "socket://127.0.0.1:1"])
def test_port_that_does_not_exist(port):
    start = time.monotonic()
    with pytest.raises(DeviceError, match="cannot open serial port"):
        DeviceLink(port)
    assert time.monotonic() - start < 1.0


def test_device_that_goes_away_mid_session(host_device):
    dev = host_device()
    with DeviceLink(dev.url, timeout=0.5) as link:
        link.hello()
        dev.proc.kill()
        dev.proc.wait()
        with pytest.raises(DeviceError):
            link.run([np.zeros((1, 8), np.int8)])
