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

from devicekit import Faults, stub_reference


RUNS = 120


def test_faulty_line_never_yields_a_wrong_result(host_device):
    # ~1 fault per 150 bytes each way: most exchanges are clean, many are hit.
    dev = host_device(
        to_device=Faults(flip=0.002, drop=0.002, duplicate=0.002, truncate=0.001),
        to_host=Faults(flip=0.002, drop=0.002, duplicate=0.002, truncate=0.001),
        seed=7,
    )
    rng = np.random.default_rng(7)
    correct = reported = 0
    with DeviceLink(dev.url, timeout=0.2, invoke_timeout=0.2, attempts=6) as link:
        link.hello()
        for _ in range(RUNS):
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
    assert faults >= 25
    assert resends >= faults // 4  # faults were noticed and the exchange repeated
    assert correct >= 0.95 * RUNS, (correct, reported)


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
    # Silent: one attempt, then two PING probes that nobody echoes - the other attempts are not
    # spent. Garbage: every attempt ends at the first damaged frame followed by silence.
    server = _silent_server(talk)
    port = server.getsockname()[1]
    start = time.monotonic()
    with DeviceLink(f"socket://127.0.0.1:{port}", timeout=0.3, attempts=3) as link:
        expected = ("no valid answer .* HELLO after 3 attempts .*damaged frames" if talk
                    else "stopped answering: nothing received")
        with pytest.raises(DeviceError, match=expected):
            link.hello()
        if not talk:
            assert link.probes == 2 and link.resends == 0
    # each wait is 0.3 s plus ~0.2 s of transfer allowance; a babbling device also costs a probe
    # per attempt
    waits = 3 * 2 if talk else 3
    assert time.monotonic() - start < waits * (0.3 + 0.2) + 0.5
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


def _reset_before_run(times: int):
    """A before_request hook: power-cycle the device just before its next ``times`` RUN requests,
    so it computes on inputs it lost (its SET_INPUT chunk went to the previous power-on)."""
    left = [times]

    def hook(dev, head: bytes) -> None:
        if head[:3] == b"\xa5\x5a\x05" and left[0] > 0:
            left[0] -= 1
            dev.restart()

    return hook


def test_reset_mid_run_is_caught_and_retried(host_device, host_device_exe_2k):
    dev = host_device(exe=host_device_exe_2k, before_request=_reset_before_run(1))
    x = np.arange(2048).astype(np.int8).reshape(1, 2048)
    with DeviceLink(dev.url, timeout=1.0) as link:
        (y,), _ = link.run([x])
        assert dev.restarts == 1 and link.resends == 1
    np.testing.assert_array_equal(y, stub_reference(x))


def test_repeated_reset_mid_run_is_reported(host_device, host_device_exe_2k):
    dev = host_device(exe=host_device_exe_2k, before_request=_reset_before_run(2))
    with DeviceLink(dev.url, timeout=1.0) as link, pytest.raises(DeviceError, match="reset mid-run"):
        link.run([np.ones((1, 2048), np.int8)])


def test_board_that_stops_answering_mid_validation_is_given_up_quickly(host_device):
    # A silent board is given up on once the inference bound has passed and a PING probe went
    # unanswered too - not after every attempt has waited the whole bound.
    dev = host_device()
    x = np.zeros((1, 8), np.int8)
    with DeviceLink(dev.url, timeout=0.5, invoke_timeout=3.0, attempts=5) as link:
        link.run([x])
        dev.to_host.drop = 1.0  # the board goes silent
        start = time.monotonic()
        with pytest.raises(DeviceError, match="stopped answering: nothing received"):
            link.run([x])
        assert link.resends == 0
    assert time.monotonic() - start < 3.0 + 2 * (0.5 + 0.3) + 0.5
