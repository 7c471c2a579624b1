"""Building emulated-board firmware: the linker script enforces the board profile's limits and a
firmware that does not fit is a DoesNotFitError naming the region, not a linker dump."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tinydeploy.baremetal import build_firmware, firmware_sources, render_linker_script
from tinydeploy.boards import load_board
from tinydeploy.errors import BuildError, DoesNotFitError, ToolMissingError
from tinydeploy.resources import firmware_dir

from devicekit import STUB_MODEL

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")


def test_linker_script_carries_the_board_limits():
    script = render_linker_script(load_board("qemu-m3"))
    assert "FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 262144" in script
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 65536" in script
    assert ". = . + 4096;" in script  # the stack reserve is a section, counted against RAM


@needs_gcc
def test_stub_firmware_fits_and_reports_its_size(tmp_path):
    fw = build_firmware(load_board("qemu-m3"), [STUB_MODEL], tmp_path)
    assert fw.elf.is_file()
    assert 1_000 < fw.flash_bytes < 16_000
    assert 4_096 < fw.ram_bytes < 16_000  # includes the 4 KB stack reserve


@needs_gcc
def test_ram_overflow_is_a_memory_verdict(tmp_path):
    # a 70,000-byte input tensor cannot fit the LM3S6965's 64 KB of SRAM
    with pytest.raises(DoesNotFitError, match=r"does not fit qemu-m3: RAM overflowed by [\d,]+ bytes") as info:
        build_firmware(load_board("qemu-m3"), [STUB_MODEL], tmp_path, defines=["TD_STUB_INPUT_BYTES=70000"])
    over = info.value.overflows["RAM"]
    assert 70_000 - 65_536 < over < 70_000 - 65_536 + 12_000  # the tensor minus RAM, plus the rest


@needs_gcc
def test_flash_overflow_is_a_memory_verdict(tmp_path):
    # 300 KB of "weights" on a 256 KB part; the same firmware links on qemu-m4 (1 MB)
    with pytest.raises(DoesNotFitError, match="FLASH overflowed by") as info:
        build_firmware(load_board("qemu-m3"), [STUB_MODEL], tmp_path / "m3", defines=["TD_STUB_TABLE_BYTES=300000"])
    assert set(info.value.overflows) == {"FLASH"}
    fw = build_firmware(load_board("qemu-m4"), [STUB_MODEL], tmp_path / "m4", defines=["TD_STUB_TABLE_BYTES=300000"])
    assert fw.flash_bytes > 300_000


@needs_gcc
def test_compile_error_is_a_build_error(tmp_path):
    broken = tmp_path / "model.c"
    broken.write_text("int td_model_init(void) { return 0 }\n")
    with pytest.raises(BuildError, match="expected ';'"):
        build_firmware(load_board("qemu-m4"), [broken], tmp_path / "out")


def test_missing_toolchain_names_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="gcc-arm-none-eabi and libnewlib-arm-none-eabi"):
        build_firmware(load_board("qemu-m4"), [STUB_MODEL], tmp_path / "out")


@needs_gcc
@pytest.mark.parametrize("board_id", ["qemu-m4", "qemu-m3"])
def test_protocol_and_board_support_are_warning_free(board_id):
    board = load_board(board_id)
    fw = firmware_dir()
    sources = [str(s) for s in firmware_sources(board)] + [str(STUB_MODEL)]
    subprocess.run(["arm-none-eabi-gcc", *board.qemu.cpu_flags, "-std=c99", "-Wall", "-Wextra", "-Wpedantic",
                    "-Werror", "-O2", "-fsyntax-only", "-DTD_SYSTICK_HZ=25000000u",
                    f"-I{fw}", f"-I{fw / 'protocol'}", f"-I{fw / 'baremetal'}", *sources],
                   check=True, capture_output=True, text=True)
