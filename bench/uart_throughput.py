"""How fast sample data moves through an emulated board's UART during validation.

Boots the stub-runtime firmware (tests/device/stub_model.c, built with a ResNet-sized 3,072-byte
int8 input and a 16-byte output) in QEMU and measures, in the same run:

  run      the validation path: DeviceLink.run() - 1 KB SET_INPUT/RUN frames, outputs in the reply
  small    a baseline: the same samples in 32-byte SET_INPUT frames, then INVOKE and GET_OUTPUT
  echo     the raw link: 1 KB PING frames echoed back (no inference), bytes counted one way

and prints sample bytes per second for each, plus run/small and run/echo ratios. The issue's target
is >= 5 KB/s of sample data through the emulated UART (exit status 1 below it).

    PYTHONPATH=. python bench/uart_throughput.py [--board qemu-m4] [--samples 20]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinydeploy.baremetal import build_firmware
from tinydeploy.boards import load_board
from tinydeploy.link import DeviceLink, Request
from tinydeploy.runners import QemuRunner

STUB = Path(__file__).resolve().parent.parent / "tests" / "device" / "stub_model.c"
INPUT_BYTES, OUTPUT_BYTES = 3072, 16
TARGET_BYTES_PER_S = 5_000


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds if seconds > 0 else float("inf")


def measure_run(link: DeviceLink, samples: list[np.ndarray]) -> float:
    start = time.monotonic()
    for x in samples:
        link.run([x])
    return rate(INPUT_BYTES * len(samples), time.monotonic() - start)


def measure_small_frames(link: DeviceLink, samples: list[np.ndarray], chunk: int = 32) -> float:
    start = time.monotonic()
    for x in samples:
        raw = x.tobytes()
        for at in range(0, len(raw), chunk):
            link.request(Request.SET_INPUT, struct.pack("<BI", 0, at) + raw[at : at + chunk])
        link.invoke()
        link.get_output(0)
    return rate(INPUT_BYTES * len(samples), time.monotonic() - start)


def measure_echo(link: DeviceLink, count: int, size: int = 1000) -> float:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    start = time.monotonic()
    for _ in range(count):
        assert link.ping(payload) == payload
    return rate(size * count, time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="qemu-m4", help="an emulated board (qemu-m4, qemu-m3)")
    parser.add_argument("--samples", type=int, default=20, help="samples per measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    board = load_board(args.board)
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, size=(1, INPUT_BYTES), dtype=np.int8) for _ in range(args.samples)]
    with tempfile.TemporaryDirectory() as tmp:
        firmware = build_firmware(board, [STUB], Path(tmp),
                                  defines=[f"TD_STUB_INPUT_BYTES={INPUT_BYTES}", f"TD_STUB_OUTPUT_BYTES={OUTPUT_BYTES}"])
        with QemuRunner.from_board(board).run(firmware.elf) as dev, \
                DeviceLink(dev.port, open_timeout=dev.open_timeout, timeout=5.0) as link:
            link.hello()
            figures = {
                "board": board.id,
                "run_bytes_per_s": measure_run(link, samples),
                "small_frames_bytes_per_s": measure_small_frames(link, samples),
                "echo_bytes_per_s": measure_echo(link, args.samples * 3),
                "resends": link.resends,
            }
    run, small, echo = (figures[k] for k in ("run_bytes_per_s", "small_frames_bytes_per_s", "echo_bytes_per_s"))
    print(f"{board.id}: {args.samples} samples of {INPUT_BYTES} B")
    print(f"  run (1 KB frames, batched RUN)   {run / 1000:7.2f} KB/s of sample data")
    print(f"  baseline: 32-byte frames          {small / 1000:7.2f} KB/s   run/baseline = {run / small:.2f}x")
    print(f"  raw link: 1 KB echo, one way     {echo / 1000:7.2f} KB/s   run/echo     = {run / echo:.2f}")
    ok = run >= TARGET_BYTES_PER_S
    print(f"  target >= {TARGET_BYTES_PER_S / 1000:.0f} KB/s: {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
