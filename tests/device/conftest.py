"""Fixtures for the serial-protocol tests (the helpers live in devicekit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devicekit import HostDevice, build_host_device


@pytest.fixture(scope="session")
def host_device_exe(tmp_path_factory) -> Path:
    return build_host_device(tmp_path_factory.mktemp("hostdev") / "td_host_device")


@pytest.fixture(scope="session")
def host_device_exe_2k(tmp_path_factory) -> Path:
    """The host device with a 2,048-byte input: a sample takes SET_INPUT + RUN."""
    return build_host_device(tmp_path_factory.mktemp("hostdev2k") / "td_host_device",
                             defines=["TD_STUB_INPUT_BYTES=2048"])


@pytest.fixture
def host_device(host_device_exe):
    """Start host devices (``host_device(exe=..., faults...)``); all are stopped after the test."""
    devices = []

    def start(exe: Path = host_device_exe, **kwargs) -> HostDevice:
        devices.append(HostDevice(exe, **kwargs))
        return devices[-1]

    yield start
    for dev in devices:
        dev.stop()
