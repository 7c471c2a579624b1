"""How fast the host link gives up on misbehaving devices, and how fast it reads a garbage flood.

1. The battery of fake misbehaving devices (tests/device/misbehaviours.py: silent after HELLO,
   silent mid-frame, replayed answers, oversized lengths, a garbage flood, wrong CRCs, malformed
   handshakes, a reset mid-run, slow but healthy lines, ...) against DeviceLink with the waits a
   validation of a 16-MAC model on a 64 MHz, 115,200-baud board gets: time to the DeviceError (or
   to the right results), per scenario.
2. Garbage-flood read rate: a TCP 'device' streaming random bytes (with sync pairs sprinkled in),
   read through the frame decoder by the old loop - pyserial read(max(1, in_waiting)), which on a
   socket is one byte per call - as the baseline, then by DeviceLink's block reads, in the same run.

    PYTHONPATH=. python bench/link_faults.py
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "device"))

from tinydeploy.errors import DeviceError  # noqa: E402
from tinydeploy.link import DeviceLink, FrameDecoder  # noqa: E402

from misbehaviours import SCENARIOS, exercise  # noqa: E402


def battery() -> int:
    print(f"{'scenario':52s} {'seconds':>8s}  outcome")
    bad = 0
    for scenario in SCENARIOS:
        device = scenario.start()
        start = time.monotonic()
        try:
            exercise(device.url, scenario.samples, scenario.input_bytes)
            outcome = "right results"
            ok = scenario.expect is None
        except DeviceError as exc:
            outcome = "DeviceError: " + exc.problem[:70]
            ok = scenario.expect is not None
        except Exception as exc:  # noqa: BLE001 - a bench reports what a test would fail on
            outcome = f"INTERNAL {type(exc).__name__}: {exc}"[:90]
            ok = False
        finally:
            device.close()
        took = time.monotonic() - start
        ok = ok and took < 30
        bad += not ok
        print(f"{scenario.name:52s} {took:8.2f}  {'' if ok else 'FAIL '}{outcome}")
    return bad


def _flood_server() -> tuple[socket.socket, threading.Event]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    rng = random.Random(5)
    chunk = rng.randbytes(1 << 16).replace(b"\xa5\x00", b"\xa5\x5a")

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                while not stop.is_set():
                    conn.sendall(chunk)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, stop


def read_rate(url: str, seconds: float, block_reads: bool) -> float:
    import serial

    decoder = FrameDecoder()
    got = 0
    if block_reads:
        with DeviceLink(url) as link:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                data = link._read(0.05)
                decoder.feed(data)
                got += len(data)
    else:
        port = serial.serial_for_url(url, timeout=0.05)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            data = port.read(max(1, port.in_waiting))
            decoder.feed(data)
            got += len(data)
        port.close()
    return got / seconds


def flood(seconds: float = 2.0) -> None:
    server, stop = _flood_server()
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    try:
        before = read_rate(url, seconds, block_reads=False)
        after = read_rate(url, seconds, block_reads=True)
    finally:
        stop.set()
        server.close()
    print(f"garbage flood read rate: baseline read(max(1, in_waiting)) {before / 1e3:,.0f} KB/s, "
          f"block reads {after / 1e3:,.0f} KB/s, ratio {after / before:,.0f}x")


def main() -> int:
    bad = battery()
    flood()
    print(f"{len(SCENARIOS)} scenarios, {bad} not as required (DeviceError or right results, under 30 s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
