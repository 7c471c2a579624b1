"""Runners: command lines, port discovery and missing programs. Real uploads cannot run here, so
the PlatformIO tests use a fake port list and a fake `pio` (named ..._mocked)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinydeploy.boards import load_board
from tinydeploy.errors import DeviceError, InputError, ToolMissingError
from tinydeploy.runners import PlatformioRunner, QemuRunner, runner_class
from tinydeploy.runners.platformio import find_port


def _ports(*entries):
    return lambda: [SimpleNamespace(device=dev, vid=vid, pid=pid) for dev, vid, pid in entries]


def test_registry_knows_both_runners():
    assert runner_class("qemu") is QemuRunner
    assert runner_class("platformio") is PlatformioRunner
    assert QemuRunner.capabilities.emulate and PlatformioRunner.capabilities.flash
    with pytest.raises(InputError, match="unknown runner 'jlink'"):
        runner_class("jlink")


def test_qemu_command_line():
    cmd = QemuRunner.from_board(load_board("qemu-m4")).command(Path("fw.elf"), 4321)
    assert cmd[:3] == ["qemu-system-arm", "-M", "mps2-an386"]
    assert ["-icount", "shift=0"] == cmd[cmd.index("-icount") : cmd.index("-icount") + 2]
    assert "tcp:127.0.0.1:4321,server=on,wait=on,nodelay=on" in cmd
    assert "enable=on,target=native" in cmd
    assert cmd[-2:] == ["-kernel", "fw.elf"]


def test_missing_qemu_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="qemu-system-arm is not installed.*Debian package qemu-system-arm"):
        QemuRunner("mps2-an386").run(tmp_path / "fw.elf")


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm")
def test_qemu_that_cannot_start_is_a_clear_error(tmp_path):
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"")
    with pytest.raises(DeviceError, match="exited with status 1 at start-up: .*unsupported machine type"):
        QemuRunner("no-such-board", start_timeout=5).run(elf)


def test_port_found_by_usb_id_mocked():
    ports = _ports(("/dev/ttyS0", None, None), ("/dev/ttyACM0", 0x2341, 0x805A), ("/dev/ttyUSB0", 0x10C4, 0xEA60))
    assert find_port([(0x2341, 0x805A)], ports) == "/dev/ttyACM0"


def test_no_or_several_matching_ports_mocked():
    with pytest.raises(DeviceError, match="no connected board with USB id 2341:805A"):
        find_port([(0x2341, 0x805A)], _ports(("/dev/ttyS0", None, None)))
    several = _ports(("/dev/ttyACM1", 0x2341, 0x805A), ("/dev/ttyACM0", 0x2341, 0x805A))
    with pytest.raises(DeviceError, match="several boards .*/dev/ttyACM0, /dev/ttyACM1.*--port"):
        find_port([(0x2341, 0x805A)], several)


def test_port_override_skips_discovery_mocked():
    runner = PlatformioRunner.from_board(load_board("nano33ble"), port="/dev/ttyX", ports=_ports())
    assert runner.resolve_port() == "/dev/ttyX"
    assert runner.command(Path("proj"), "/dev/ttyX") == [
        "pio", "run", "-d", "proj", "-e", "nano33ble", "-t", "upload", "--upload-port", "/dev/ttyX"]


def test_missing_pio_names_pip_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="pip install platformio"):
        PlatformioRunner("nano33ble", port="/dev/ttyX").run(tmp_path)


def _fake_pio(tmp_path: Path, exit_code: int) -> Path:
    """A `pio` that records its arguments and exits with ``exit_code``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pio = bin_dir / "pio"
    pio.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\necho "upload says hi"\nexit {exit_code}\n')
    pio.chmod(pio.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_upload_runs_pio_with_the_found_port_mocked(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_pio(tmp_path, 0)}{os.pathsep}/usr/bin:/bin")
    runner = PlatformioRunner("nano33ble", [(0x2341, 0x805A)], ports=_ports(("/dev/ttyACM0", 0x2341, 0x805A)))
    with runner.run(tmp_path / "proj") as device:
        assert device.port == "/dev/ttyACM0"
    args = (tmp_path / "args").read_text().split()
    assert args == ["run", "-d", str(tmp_path / "proj"), "-e", "nano33ble", "-t", "upload",
                    "--upload-port", "/dev/ttyACM0"]


def test_failed_upload_is_a_clear_error_mocked(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{_fake_pio(tmp_path, 1)}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(Exception, match="upload to /dev/ttyX failed: upload says hi"):
        PlatformioRunner("nano33ble", port="/dev/ttyX").run(tmp_path / "proj")
