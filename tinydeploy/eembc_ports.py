"""Run a program (mlcommons' MLPerf Tiny runner) with extra serial ports in pyserial's port list.

The runner finds its device under test in ``serial.tools.list_ports.comports()`` and keeps only
ports with a USB vendor id, which it matches against its devices file. An emulated board's UART
reaches the host as a pseudo-terminal (``tinydeploy benchmark PROJECT --serve /tmp/ttyDUT``, or
socat), and pyserial lists no pty: on Linux it looks only at /dev/ttyS*, ttyUSB*, ttyACM*, ... and
reads vendor and product ids from sysfs, where a pty has no entry. So this wrapper adds each
``--port PATH`` to the list, with the USB ids given (default 1209:0001, pid.codes' test id) before
running the program in this interpreter::

    python3 -m tinydeploy.eembc_ports --port /tmp/ttyDUT -- main.py -d devices.yaml -m p

The program itself is unchanged; only the answer of ``comports()`` grows.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

DEFAULT_VID = 0x1209
DEFAULT_PID = 0x0001


def _port_info(path: str, vid: int, pid: int):
    from serial.tools.list_ports_common import ListPortInfo

    info = ListPortInfo(path, skip_link_detection=True)
    info.vid, info.pid = vid, pid
    info.description = "tinydeploy emulated board"
    info.manufacturer = "tinydeploy"
    info.product = "emulated board"
    info.serial_number = os.path.basename(path)
    info.hwid = f"USB VID:PID={vid:04X}:{pid:04X} SER={info.serial_number} (tinydeploy pty)"
    return info


def add_ports(paths: list[str], vid: int = DEFAULT_VID, pid: int = DEFAULT_PID) -> None:
    """Make pyserial's comports() list ``paths`` too (every module that exposes it)."""
    import serial.tools.list_ports as list_ports

    extra = [_port_info(p, vid, pid) for p in paths]
    modules = [list_ports]
    for name in ("list_ports_linux", "list_ports_posix", "list_ports_osx", "list_ports_windows"):
        module = sys.modules.get(f"serial.tools.{name}")
        if module is not None and hasattr(module, "comports"):
            modules.append(module)
    for module in modules:
        original = module.comports

        def comports(include_links=False, _original=original):
            return [*_original(include_links), *extra]

        module.comports = comports


def _hex(text: str) -> int:
    return int(text, 16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m tinydeploy.eembc_ports",
        description="Run PROGRAM (a Python file) with PORTs added to pyserial's port list.")
    parser.add_argument("--port", action="append", required=True, metavar="PATH",
                        help="serial port to add, e.g. the pty of 'tinydeploy benchmark --serve'")
    parser.add_argument("--vid", type=_hex, default=DEFAULT_VID, help="USB vendor id, hex (default 1209)")
    parser.add_argument("--pid", type=_hex, default=DEFAULT_PID, help="USB product id, hex (default 0001)")
    parser.add_argument("program", metavar="PROGRAM", help="the Python program, e.g. main.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    opts = parser.parse_args(argv)
    for path in opts.port:
        if not os.path.exists(path):
            parser.exit(2, f"error: --port {path} does not exist (start 'tinydeploy benchmark "
                           f"PROJECT --serve {path}' first)\n")
    if not os.path.isfile(opts.program):
        parser.exit(2, f"error: {opts.program} is not a file (run this from the runner's folder)\n")
    add_ports(opts.port, opts.vid, opts.pid)
    program = os.path.abspath(opts.program)
    sys.argv = [program, *[a for a in opts.args if a != "--"]]
    sys.path.insert(0, os.path.dirname(program))
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
