"""The device's inter-byte timeout (PROTOCOL.md, "Timeouts, resync and retries") against a clock
that steps back, as the emulated boards' SysTick clock does at millisecond wraps under QEMU - the
cause of healthy frames being answered TIMEOUT while the host was busy (issue 7, item 4).

The device here is the real protocol code built for the desktop with glitchy_clock_hal.c, a HAL
whose clock and UART polling loop reproduce the emulated boards' (a stand-in: QEMU's timing cannot
be forced on demand; tests/device/test_qemu.py runs the real thing on a loaded host)."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from tinydeploy.link import FrameDecoder, encode_frame, Request, RSP_ERROR, ErrorCode
from tinydeploy.link import DeviceLink

from devicekit import GLITCHY_CLOCK_HAL, HostDevice, build_host_device, stub_reference


@pytest.fixture(scope="module")
def glitchy_device_exe(tmp_path_factory):
    """The host device with a 2,048-byte input and the glitchy clock; plain -O1 (no sanitizers),
    so its polling loop runs at a UART-like pace."""
    return build_host_device(tmp_path_factory.mktemp("glitchy") / "td_glitchy_device", sanitize=False,
                             defines=["TD_STUB_INPUT_BYTES=2048", "TD_LINK_BYTE_TIMEOUT_MS=20"],
                             hal=GLITCHY_CLOCK_HAL)


def test_whole_frames_on_a_slow_line_are_never_timed_out(glitchy_device_exe):
    # Bytes trickle in at QEMU's pace (~30 KB/s, 16-byte pieces), so the device polls between
    # pieces and its clock steps back under it many times per frame. Every exchange must go
    # through the first time: a TIMEOUT here would be for a frame that was still arriving.
    dev = HostDevice(glitchy_device_exe, to_device_bytes_per_s=30_000)
    rng = np.random.default_rng(3)
    try:
        with DeviceLink(dev.url, timeout=1.0, invoke_timeout=1.0) as link:
            for _ in range(6):
                x = rng.integers(-128, 128, size=(1, 2048), dtype=np.int8)
                (y,), _ = link.run([x])
                np.testing.assert_array_equal(y, stub_reference(x))
            assert link.resends == 0 and link.probes == 0
    finally:
        dev.stop()


def test_a_frame_that_stops_is_still_dropped_in_time(glitchy_device_exe):
    # The clock glitch must not switch the timeout off: half a frame, then silence, is answered
    # TIMEOUT (with its seq) after about the 20 ms byte timeout.
    dev = HostDevice(glitchy_device_exe)
    try:
        with socket.create_connection(("127.0.0.1", int(dev.url.rsplit(":", 1)[1]))) as sock:
            frame = encode_frame(Request.PING, 77, bytes(100))
            start = time.monotonic()
            sock.sendall(frame[:40])
            decoder, frames = FrameDecoder(), []
            sock.settimeout(2.0)
            while not frames:
                frames = decoder.feed(sock.recv(100))
            took = time.monotonic() - start
        (reply,) = frames
        assert (reply.type, reply.seq, reply.payload[0]) == (RSP_ERROR, 77, ErrorCode.TIMEOUT)
        assert 0.015 < took < 0.5
    finally:
        dev.stop()
