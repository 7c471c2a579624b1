"""Fuzz the device's frame parser and request handlers, built for the desktop with
AddressSanitizer + UBSan: random bytes and mutated valid frames must never crash the device, and
everything it sends back must be well-formed frames. First a random stream through the real host
device, then coverage-guided fuzzing with libFuzzer (bench/fuzz_link.py)."""

from __future__ import annotations

import random
import struct
import subprocess

import pytest

from tinydeploy.link import RSP_ERROR, RSP_OK, FrameDecoder, Request, encode_frame


def _valid_request(rng: random.Random) -> bytes:
    """A plausible request with fields at and around their bounds."""
    req = rng.choice(list(Request) + [0x00, 0x42, 0xFF])
    offset = rng.choice([0, 1, 3, 4, 7, 8, 1023, 0xFFFFFFFF, rng.getrandbits(32)])
    data = rng.randbytes(rng.choice([0, 1, 4, 8, 9, rng.randrange(1020)]))
    if req in (Request.SET_INPUT, Request.RUN):
        payload = struct.pack("<BI", rng.choice([0, 1, 255]), offset) + data
    elif req == Request.GET_OUTPUT:
        payload = struct.pack("<BIH", rng.choice([0, 1, 255]), offset, rng.choice([0, 1, 4, 5, 1024, 65535]))
    else:
        payload = data if rng.random() < 0.5 else b""
    return encode_frame(req, rng.randrange(256), payload)


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    raw = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        at = rng.randrange(len(raw))
        if kind == 0:
            raw[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del raw[at:]
        elif kind == 2:
            raw.insert(at, raw[at])
        elif kind == 3 and len(raw) > 1:
            del raw[at]
        else:  # a length field pointing far beyond the payload (or beyond the limit)
            raw[4:6] = struct.pack("<H", rng.choice([1024, 1025, 4096, 65535]))
        if not raw:
            break
    return bytes(raw)


def _stream(rng: random.Random, count: int) -> tuple[bytes, int]:
    parts, intact = [], 0
    for _ in range(count):
        roll = rng.random()
        if roll < 0.4:
            parts.append(_valid_request(rng))
            intact += 1
        elif roll < 0.85:
            parts.append(_mutate(_valid_request(rng), rng))
        else:
            parts.append(rng.randbytes(rng.randrange(1, 64)))
    return b"".join(parts), intact


def test_parser_survives_fuzzing_under_asan(host_device_exe):
    rng = random.Random(20261122)
    stream, intact = _stream(rng, 4000)
    proc = subprocess.run([str(host_device_exe)], input=stream, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert b"AddressSanitizer" not in proc.stderr and b"runtime error" not in proc.stderr

    decoder = FrameDecoder(max_payload=1024)
    replies = decoder.feed(proc.stdout)
    assert decoder.rejected == 0, "the device sent a malformed frame"
    assert {f.type for f in replies} <= {RSP_OK, RSP_ERROR}
    # Mutations can swallow a following good frame, so not every intact one gets its own reply,
    # but the device must keep answering throughout the stream.
    assert len(replies) >= intact // 2
    assert sum(f.type == RSP_OK for f in replies) > 100


def _fuzz_driver():
    """bench/fuzz_link.py, imported by path (bench/ is not a package)."""
    import importlib.util

    from paths import REPO

    spec = importlib.util.spec_from_file_location("fuzz_link", REPO / "bench" / "fuzz_link.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coverage_guided_fuzzing_finds_no_crash(tmp_path):
    """libFuzzer + ASan + UBSan over the parser, the request handlers and the main loop (with a
    clock that times out and steps back on the fuzzer's command), for 20 s: no crash, no sanitizer
    report, no malformed reply. The 10^7-execution run is `python bench/fuzz_link.py`."""
    import os

    fuzz = _fuzz_driver()
    try:
        result = fuzz.run(seconds=20, workdir=tmp_path)
    except fuzz.FuzzerMissing as exc:
        if os.environ.get("CI"):
            raise  # .ci/setup installs clang and libFuzzer: missing in CI is a failure
        pytest.skip(str(exc))
    assert result["crashes"] == 0, result["log"][-3000:]
    assert result["executions"] > 20_000, result["log"][-2000:]
    # it got past the CRC into every request handler and the timeout path (edges of td_link.c + harness)
    assert result["coverage"] >= 150, result["coverage"]
