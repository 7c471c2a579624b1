"""The flash and validate stages over a rendered project folder.

A project written by ``tinydeploy build`` carries a manifest (board, runtime, model hash). From
it this module knows how to get the firmware running: emulated boards build an ELF with
arm-none-eabi-gcc (tinydeploy.baremetal; for the tflm runtime against the TFLM library found by
tinydeploy.tflm_lib) and boot it in QEMU; real boards upload the PlatformIO project and talk to the
USB serial port found from the board's VID/PID (or ``--port``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tinydeploy.boards import BoardProfile
from tinydeploy.build import project_board, read_manifest
from tinydeploy.errors import InputError
from tinydeploy.projects import project_kind


@dataclass(frozen=True)
class Project:
    path: Path
    board: BoardProfile
    runtime: str
    manifest: dict
    tflm_lib_option: str | None = None   # --tflm-lib, if given

    def tflm_library(self, required: bool = False):
        """The TFLM library this project builds and validates with (tinydeploy.tflm_lib's order:
        --tflm-lib, TINYDEPLOY_TFLM_LIB, the project's PlatformIO libdeps, the one it was built
        with); None when there is none and ``required`` is False."""
        from tinydeploy import tflm_lib

        where = {"project_dir": self.path, "env_name": self.board.id,
                 "recorded": (self.manifest.get("tflm_library") or {}).get("path")}
        if required:
            return tflm_lib.require_library(self.tflm_lib_option, **where)
        return tflm_lib.find_library(self.tflm_lib_option, **where)

    @property
    def model_bytes(self) -> bytes:
        return (self.path / self.manifest["model"]).read_bytes()

    @property
    def kind(self) -> str:
        return project_kind(self.board)

    @property
    def elf(self) -> Path:
        return self.path / "build" / "firmware.elf"

    @property
    def profile_elf(self) -> Path:
        """The same firmware built with TD_PROFILE: it answers OP_TIMINGS (validate --profile)."""
        return self.path / "build" / "profile" / "firmware.elf"

    @property
    def protocol(self) -> str:
        """"tinydeploy" (validate), or "eembc" (the MLPerf Tiny benchmark protocol)."""
        return self.manifest.get("protocol", "tinydeploy")


def open_project(path: str | Path, tflm_lib: str | None = None) -> Project:
    path = Path(path)
    manifest = read_manifest(path)
    return Project(path, project_board(path, manifest), manifest["runtime"], manifest, tflm_lib)


def build_firmware(project: Project, progress=None, profile: bool = False):
    """Compile and link an emulated board's firmware (``build/firmware.elf``); return its sizes.
    With ``profile``, the firmware that times each layer (TD_PROFILE, ``build/profile/``).

    The tflm runtime needs the TFLM library (compiled once per core, then cached). A firmware that
    does not fit the board fails the link and arrives as DoesNotFitError.
    """
    from tinydeploy import baremetal

    src = project.path / "src"
    c_sources, options = sorted(src.glob("*.c")), {}
    out = project.profile_elf.parent if profile else project.path / "build"
    if profile:
        options["defines"] = ["TD_PROFILE"]
    if project.protocol == "eembc":  # the EEMBC benchmark server replaces tinydeploy's protocol
        from tinydeploy import eembc

        main, extra = eembc.baremetal_parts()
        c_sources += list(extra)
        options = {"main": str(main), "protocol": False,
                   "defines": [f"TD_EEMBC_PROGRESS_MS={eembc.PROGRESS_MS_EMULATED}"]}
    if project.runtime == "tflm":
        from tinydeploy.analyze import analyze
        from tinydeploy.tflm_firmware import build_tflm_firmware

        return build_tflm_firmware(project.board, src, out,
                                   project.tflm_library(required=True),
                                   analyze(project.model_bytes).distinct_ops, progress,
                                   c_sources=c_sources, **options)
    if project.runtime != "native":
        raise InputError(f"unknown runtime '{project.runtime}' in {project.path}/tinydeploy.json",
                         "rebuild the project with tinydeploy build")
    return baremetal.build_firmware(project.board, c_sources, out, **options)


def flash(project: Project, port: str | None = None, progress=None) -> str:
    """Put the firmware where it runs; return a sentence saying what happened."""
    if project.kind == "baremetal":
        fw = build_firmware(project, progress)
        return (f"built {fw.elf} for {project.board.id}: {fw.flash_bytes:,} B flash, "
                f"{fw.ram_bytes:,} B RAM (QEMU loads it at validate time)")
    from tinydeploy.runners import PlatformioRunner

    device = PlatformioRunner.from_board(project.board, port).run(project.path)
    return f"uploaded to {project.board.id} on {device.port}"


def link_options(project: Project, timeout: float | None = None) -> dict:
    """How long the link waits for this project's device (DeviceLink keyword arguments): an
    inference may take ``timeout`` s, by default what the model's MACs take on the board's clock at
    a pessimistic cost per MAC (tinydeploy.link.inference_bound_s), and bytes move at the slowest
    the board's link is expected to go; each exchange also gets its bytes' transfer time."""
    from tinydeploy.analyze import analyze
    from tinydeploy.link import inference_bound_s, link_bytes_per_s

    board = project.board
    if timeout is None:
        timeout = inference_bound_s(analyze(project.model_bytes).total_macs, board.clock_hz, board.emulated)
    return {"invoke_timeout": timeout, "bytes_per_s": link_bytes_per_s(board.serial.baud, board.emulated)}


@contextlib.contextmanager
def running(project: Project, port: str | None = None, timeout: float | None = None,
            profile: bool = False) -> Iterator[object]:
    """A connected DeviceLink to the project's firmware, running for the block's duration.

    Emulated boards: builds the ELF if needed and boots it in QEMU (always stopped afterwards);
    with ``profile``, the firmware built with TD_PROFILE (built each time: it is not flashed).
    Real boards: connects to ``port`` or the port found from the board's USB VID/PID; the firmware
    must have been flashed already (``tinydeploy flash``). ``timeout``: see :func:`link_options`.
    """
    if project.protocol != "tinydeploy":
        raise InputError(f"{project.path} speaks the EEMBC benchmark protocol, not tinydeploy's",
                         f"run 'tinydeploy benchmark {project.path} --samples DATA', or rebuild "
                         "without --protocol eembc to validate it")
    waits = link_options(project, timeout)
    from tinydeploy.link import DeviceLink

    if project.kind == "baremetal" and port is None:
        from tinydeploy.runners import QemuRunner

        if profile:
            build_firmware(project, profile=True)
        elif not project.elf.is_file():
            build_firmware(project)
        elf = project.profile_elf if profile else project.elf
        with QemuRunner.from_board(project.board).run(elf) as device:
            with DeviceLink(device.port, open_timeout=device.open_timeout, **waits) as link:
                yield link
        return
    if port is None:
        from tinydeploy.runners import PlatformioRunner

        port = PlatformioRunner.from_board(project.board).resolve_port()
    with DeviceLink(port, baudrate=project.board.serial.baud, open_timeout=2.0, **waits) as link:
        yield link
