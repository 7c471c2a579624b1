"""The host link against the real device code built for the desktop (td_link.c + td_hal_host.c)."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from tinydeploy.errors import DeviceError, InputError
from tinydeploy.link import DeviceLink, Request

from devicekit import STUB_HASH, stub_reference


def test_hello_reports_the_stub_model(host_device):
    dev = host_device()
    with DeviceLink(dev.url, timeout=1.0) as link:
        info = link.hello(expected_hash=STUB_HASH)
    assert info.protocol_version == 1
    assert info.runtime == "stub"
    assert info.init_status == 0
    assert info.arena_bytes == 12
    assert info.clock_hz == 25_000_000
    assert info.max_payload == 1024
    (inp,), (out,) = info.inputs, info.outputs
    assert (inp.dtype, inp.shape, inp.nbytes, inp.scale, inp.zero_point) == (np.int8, (1, 8), 8, 0.5, -3)
    assert (out.dtype, out.shape, out.nbytes, out.scale, out.zero_point) == (np.int8, (1, 4), 4, 0.25, 7)


def test_run_matches_reference_and_reports_time(host_device):
    dev = host_device()
    rng = np.random.default_rng(0)
    with DeviceLink(dev.url, timeout=1.0) as link:
        for _ in range(20):
            x = rng.integers(-128, 128, size=(1, 8), dtype=np.int8)
            (y,), timing = link.run([x])
            np.testing.assert_array_equal(y, stub_reference(x))
            assert timing.device_us >= 0 and timing.wall_s > 0
        assert link.resends == 0


def test_step_by_step_api_matches_run(host_device):
    dev = host_device()
    x = np.arange(-4, 4, dtype=np.int8).reshape(1, 8)
    with DeviceLink(dev.url, timeout=1.0) as link:
        link.set_input(0, x)
        link.invoke()
        np.testing.assert_array_equal(link.get_output(0), stub_reference(x))


def test_ping_echoes_a_full_payload(host_device):
    dev = host_device()
    data = bytes(range(256)) * 4
    with DeviceLink(dev.url, timeout=1.0) as link:
        assert link.ping(data) == data


def test_wrong_model_hash_is_refused(host_device):
    dev = host_device()
    with DeviceLink(dev.url, timeout=1.0) as link, pytest.raises(DeviceError, match="another model"):
        link.hello(expected_hash=b"\xff" * 32)


def test_application_errors_are_reported_not_retried(host_device):
    dev = host_device()
    with DeviceLink(dev.url, timeout=1.0) as link:
        with pytest.raises(DeviceError, match="BAD_TENSOR"):
            link.request(Request.SET_INPUT, bytes([3, 0, 0, 0, 0, 1]))
        with pytest.raises(DeviceError, match="BAD_RANGE"):
            link.request(Request.GET_OUTPUT, bytes([0, 2, 0, 0, 0, 4, 0]))
        with pytest.raises(DeviceError, match="UNSUPPORTED"):
            link.request(Request.OP_TIMINGS)
        with pytest.raises(DeviceError, match="code 66|UNKNOWN_TYPE"):
            link.request(0x42)
        assert link.resends == 0


def test_wrong_input_size_is_an_input_error(host_device):
    dev = host_device()
    with DeviceLink(dev.url, timeout=1.0) as link, pytest.raises(InputError, match="expects 8"):
        link.run([np.zeros(9, np.int8)])


def test_link_over_a_pty_and_a_busy_port(host_device_exe):
    """A real tty path (the host device on a pty's master side): works, and a second opener of the
    same port gets a clear 'cannot open' error instead of fighting over the bytes."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    proc = subprocess.Popen([str(host_device_exe)], stdin=master, stdout=master, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        with DeviceLink(path, timeout=1.0) as link:
            assert link.hello(expected_hash=STUB_HASH).runtime == "stub"
            x = np.full((1, 8), 5, np.int8)
            (y,), _ = link.run([x])
            np.testing.assert_array_equal(y, stub_reference(x))
            with pytest.raises(DeviceError, match=f"cannot open serial port {path}"):
                DeviceLink(path)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def test_tflm_device_that_failed_to_initialise_is_refused_at_the_handshake(tmp_path, host_device):
    """The real device code with a runtime whose td_model_init() returned -4 (TFLM's AllocateTensors
    failing): the host says so right after the handshake, with the fix, instead of a tensor-size
    mismatch later; and a request that needs the model gets the same explanation."""
    from devicekit import build_host_device

    exe = build_host_device(tmp_path / "td_failed_init", defines=["TD_STUB_INIT_STATUS=-4",
                                                                  'TD_STUB_RUNTIME="tflm"'])
    dev = host_device(exe=exe)
    with DeviceLink(dev.url, timeout=1.0) as link:
        with pytest.raises(DeviceError, match=r"TFLM could not allocate its tensor arena .*status -4.*larger arena"):
            link.hello(expected_hash=STUB_HASH)
        info = link.hello(require_ready=False)
        assert (info.runtime, info.init_status) == ("tflm", -4)
        with pytest.raises(DeviceError, match="could not allocate its tensor arena"):
            link.request(Request.INVOKE)
