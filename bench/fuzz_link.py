"""Coverage-guided fuzzing of the device side of the serial protocol (firmware/protocol/td_link.c)
with libFuzzer, AddressSanitizer and UBSan.

Builds tests/device/fuzz/fuzz_link.c (the harness: raw bytes through the parser, well-formed but
hostile requests through the handlers, and the real main loop with a fake HAL whose clock the input
drives) with clang -fsanitize=fuzzer,address,undefined, seeds a corpus with valid requests, runs
libFuzzer and prints executions, coverage and crashes. Exit status 1 on any crash, leak or
protocol violation (the harness aborts on a malformed reply).

    python bench/fuzz_link.py                    # 10,000,000 executions (the recorded run)
    python bench/fuzz_link.py --seconds 25       # a short run (what the test suite does)

The recorded run (td_link.c and this harness as of commit 6a751fb, clang 14.0.6):
10,000,000 executions, 0 crashes, 168 edges and 1,160 features covered, 4,067 s at nice 5 on the
shared 2-core machine (~10,000 executions/s on an idle core).

Why libFuzzer: the parser is a pure C function over bytes, which is libFuzzer's case exactly -
in-process (tens of thousands of executions a second), coverage-guided with comparison tracing
(it learns the sync bytes and length bounds), and the sanitizers come with the same clang. It
needs Debian's clang and libclang-rt-14-dev (.ci/setup installs them).
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "tests" / "device" / "fuzz" / "fuzz_link.c"
FIRMWARE = REPO / "firmware"
#: Long enough for a whole 1,024-byte frame plus a record header.
MAX_LEN = 1100


class FuzzerMissing(RuntimeError):
    pass


def build(out: Path) -> Path:
    """Compile the harness and td_link.c into a libFuzzer binary at ``out``."""
    clang = shutil.which("clang")
    if clang is None:
        raise FuzzerMissing("clang is not installed (Debian: clang and libclang-rt-14-dev; bash .ci/setup)")
    cmd = [clang, "-g", "-O1", "-std=c99", "-Wall", "-Wextra", "-Werror",
           "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
           f"-I{FIRMWARE}", f"-I{FIRMWARE / 'protocol'}", str(HARNESS), str(FIRMWARE / "protocol" / "td_link.c"),
           "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if "libclang_rt.fuzzer" in proc.stderr or "cannot find" in proc.stderr:
            raise FuzzerMissing("clang cannot link libFuzzer (Debian: libclang-rt-14-dev; bash .ci/setup)")
        raise RuntimeError(f"building the fuzzer failed:\n{proc.stderr}")
    return out


def _frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    import zlib

    body = struct.pack("<BBH", type_, seq, len(payload)) + payload
    return b"\xa5\x5a" + body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _record(type_: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    return struct.pack("<BBHB", type_, seq, len(payload), flags) + payload


def seed_corpus(folder: Path) -> int:
    """Valid requests for each input mode of the harness (see fuzz_link.c)."""
    folder.mkdir(parents=True, exist_ok=True)
    requests = [
        (0x01, b""),                                          # HELLO
        (0x02, struct.pack("<BI", 0, 0) + bytes(range(37))),   # SET_INPUT, tensor 0 whole
        (0x02, struct.pack("<BI", 1, 1000) + bytes(500)),     # SET_INPUT, tensor 1 tail
        (0x03, b""),                                          # INVOKE
        (0x04, struct.pack("<BIH", 1, 100, 1000)),            # GET_OUTPUT
        (0x05, struct.pack("<BI", 1, 1019) + bytes(481)),     # RUN with the last chunk
        (0x06, b""),                                          # OP_TIMINGS (unsupported)
        (0x07, b"ping"),                                      # PING
    ]
    seeds = []
    for init in (0x00, 0x04):
        for i, (t, p) in enumerate(requests):
            seeds.append(bytes([0x00 | init]) + _frame(t, i, p))
            seeds.append(bytes([0x01 | init]) + _record(t, i, p) + _record(t, i + 1, p, flags=0x23))
            seeds.append(bytes([0x02 | init]) + _frame(t, i, p)[:7] + b"\xfe\x01" + _frame(t, i, p)[7:]
                         + _frame(t, i + 1, p)[:5] + b"\xfe\x00")
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:03d}").write_bytes(seed)
    return len(seeds)


def run(runs: int | None = None, seconds: int | None = None, workdir: Path | None = None,
        echo=None) -> dict:
    """Build, seed and run the fuzzer; return {'executions', 'crashes', 'coverage', 'features',
    'exec_per_s', 'seconds', 'command', 'log'}."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="tinydeploy-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    binary = build(workdir / "fuzz_link")
    corpus = workdir / "corpus"
    seed_corpus(corpus)
    artifacts = workdir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    cmd = [str(binary), str(corpus), f"-max_len={MAX_LEN}", "-print_final_stats=1", "-rss_limit_mb=2048",
           f"-artifact_prefix={artifacts}/", "-seed=20261130"]
    if runs is not None:
        cmd.append(f"-runs={runs}")
    if seconds is not None:
        cmd.append(f"-max_total_time={seconds}")
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - start
    log = proc.stderr
    if echo:
        echo(log)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", log))
    last = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", log)
    crashes = sorted(p.name for p in artifacts.iterdir())
    failed = proc.returncode != 0 or bool(crashes) or "ERROR: AddressSanitizer" in log \
        or "runtime error" in log or "protocol violation" in log
    executions = int(stats.get("number_of_executed_units", 0))
    return {
        "executions": executions,
        "crashes": len(crashes) or int(failed),
        "crash_files": crashes,
        "coverage": int(last[-1][1]) if last else 0,
        "features": int(last[-1][2]) if last else 0,
        "exec_per_s": executions / took if took else 0.0,
        "seconds": took,
        "returncode": proc.returncode,
        "command": " ".join(cmd),
        "log": log,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="executions (default 10,000,000 unless --seconds)")
    parser.add_argument("--seconds", type=int, help="stop after this long instead")
    parser.add_argument("--workdir", type=Path, help="keep the binary, corpus and crashes here")
    args = parser.parse_args()
    runs = args.runs if args.runs or args.seconds else 10_000_000
    try:
        result = run(runs, args.seconds, args.workdir)
    except FuzzerMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"command     {result['command']}")
    print(f"executions  {result['executions']:,} in {result['seconds']:.0f} s ({result['exec_per_s']:,.0f}/s)")
    print(f"coverage    {result['coverage']} edges, {result['features']} features")
    print(f"crashes     {result['crashes']}" + (f" ({', '.join(result['crash_files'])})" if result["crash_files"] else ""))
    if result["crashes"]:
        print(result["log"][-3000:], file=sys.stderr)
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
