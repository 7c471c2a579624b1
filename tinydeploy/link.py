"""Host side of the serial protocol (the spec is ``firmware/PROTOCOL.md``; the device side is
``firmware/protocol/td_link.c``).

:class:`DeviceLink` talks to one running firmware over anything pyserial can open: a real port
(``/dev/ttyACM0``), a pty, or ``socket://127.0.0.1:PORT`` for QEMU. Every request gets exactly one
response; a garbled exchange is detected (CRC, sequence number, timeouts) and resent a bounded
number of times, so a caller either gets correct bytes or a :class:`~tinydeploy.errors.DeviceError`
within a bounded time — never a corrupted result, never a hang.

How long it waits is bounded by what the board can do: every reply is given its transfer time at
the link's slowest expected speed plus a fixed latency, and an inference the time its MACs take at
a pessimistic cost per MAC (:func:`inference_bound_s`). A wait that runs out is followed by a PING
probe, which tells a slow or lossy line (the device echoes: resend) from a device that is gone,
replays old answers or talks garbage (one DeviceError naming which, within seconds).

The pure frame functions (:func:`encode_frame`, :class:`FrameDecoder`) are exposed for tests.
"""

from __future__ import annotations

import math
import os
import select
import struct
import time
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from tinydeploy.errors import DeviceError, InputError

PROTOCOL_VERSION = 1
SYNC = b"\xa5\x5a"
_HEADER = struct.Struct("<2sBBH")  # sync, type, seq, payload length
HEADER_BYTES = _HEADER.size
CRC_BYTES = 4
FRAME_OVERHEAD = HEADER_BYTES + CRC_BYTES
#: Longest a read waits before the caller's deadline is looked at again (only for ports that cannot
#: be waited on with select(); the others wake up as soon as a byte arrives).
_READ_SLICE_S = 0.05
#: Longest payload the host accepts before it knows the device's own limit (from HELLO).
DEFAULT_MAX_PAYLOAD = 4096
#: The smallest max_payload a device may report: td_link.c refuses to build below it.
MIN_MAX_PAYLOAD = 128
MAX_RANK = 6
MAX_RUNTIME_NAME = 32

#: How long a healthy device may take to start answering, beyond moving the bytes: USB and OS
#: latency, QEMU being scheduled on a busy host.
REPLY_LATENCY_S = 1.0
#: The slowest an emulated board's UART is expected to move bytes. QEMU hands the guest one byte
#: per turn of its main loop: ~30 KB/s on an idle 2-core host, 1-2 KB/s with both cores busy
#: compiling (bench/uart_throughput.py, and the busy-host runs in tests/device/test_qemu.py).
EMULATED_BYTES_PER_S = 1_000.0
#: Pessimistic cost of one MAC: cycles on a real board (TFLM reference kernels on a Cortex-M0+ are
#: ~20; CMSIS-NN on an M4 ~2) and instructions on an emulated one (native kernels ~14 with overhead
#: for the digits example, TFLM + CMSIS-NN ~3.5 for the MLPerf image classifier).
CYCLES_PER_MAC_BOUND = 64
INSTRUCTIONS_PER_MAC_BOUND = 32
#: The slowest QEMU is expected to execute guest instructions in real time: ~330 M/s on an idle
#: host (tests/device spin loop), a few times less with both cores busy.
EMULATED_INSTRUCTIONS_PER_S = 25e6
#: After an inference has been seen, a later one may take this many times the slowest so far
#: before the device is probed (a busy host slows QEMU down by a few times).
SLOWDOWN_BOUND = 10
#: PING probes sent after a request went unanswered before the device is declared gone.
PROBE_TRIES = 2
#: Bytes that are not frames, or answers to other requests, that one request tolerates before the
#: device is reported as babbling (a real board's boot messages are far less).
JUNK_LIMIT = 16 * 1024
STALE_LIMIT = 64
#: OK answers to frames never sent (or answered already) before the device is called a replayer.
REPLAY_LIMIT = 2
#: After a damaged frame, this much silence means its sender is done: resend at once.
_QUIET_AFTER_DAMAGE_S = 0.1


def link_bytes_per_s(baud: int, emulated: bool) -> float:
    """The slowest a board's serial link is expected to move bytes: half the nominal rate of its
    UART (8N1: 10 bits a byte), or :data:`EMULATED_BYTES_PER_S` for QEMU's UART."""
    return EMULATED_BYTES_PER_S if emulated else max(baud / 20.0, 100.0)


def inference_bound_s(macs: int, clock_hz: int, emulated: bool) -> float:
    """The longest one inference of a ``macs``-MAC model may take on a healthy board, in seconds:
    :data:`REPLY_LATENCY_S` plus the MACs at a pessimistic cost — :data:`CYCLES_PER_MAC_BOUND`
    cycles at the board's clock, or on an emulated board (whose clock is QEMU's virtual time, not
    the host's) :data:`INSTRUCTIONS_PER_MAC_BOUND` instructions at the slowest rate QEMU runs."""
    if emulated:
        compute = macs * INSTRUCTIONS_PER_MAC_BOUND / EMULATED_INSTRUCTIONS_PER_S
    else:
        compute = macs * CYCLES_PER_MAC_BOUND / max(clock_hz, 1_000_000)
    return REPLY_LATENCY_S + compute


class Request(IntEnum):
    HELLO = 0x01
    SET_INPUT = 0x02
    INVOKE = 0x03
    GET_OUTPUT = 0x04
    RUN = 0x05
    OP_TIMINGS = 0x06
    PING = 0x07


RSP_OK = 0x80
RSP_ERROR = 0x81


class ErrorCode(IntEnum):
    CRC = 1
    TIMEOUT = 2
    TOO_LONG = 3
    UNKNOWN_TYPE = 4
    BAD_PAYLOAD = 5
    BAD_TENSOR = 6
    BAD_RANGE = 7
    RUNTIME = 8
    UNSUPPORTED = 9


#: Errors that mean "your request arrived damaged": resend it.
TRANSPORT_ERRORS = frozenset({ErrorCode.CRC, ErrorCode.TIMEOUT, ErrorCode.TOO_LONG})

DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.int32, 5: np.float32}


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32/IEEE (zlib's); the device's ``td_crc32`` computes the same."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def encode_frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """``A5 5A type seq len16 payload crc32``; the CRC covers type..payload."""
    body = struct.pack("<BBH", type_, seq & 0xFF, len(payload)) + payload
    return SYNC + body + struct.pack("<I", crc32(body))


class FrameDecoder:
    """Turns a byte stream into frames, skipping anything that is not a whole, CRC-correct frame.

    On a bad CRC or an impossible length only the first sync byte is dropped and the search goes
    on, so a genuine frame that follows (or hides inside) garbage is still found. A candidate whose
    length field promises more bytes than have come is given up as soon as a complete, CRC-correct
    frame starts inside it: a damaged or made-up length field never holds back the frames behind it.
    """

    _JUNK_SAMPLE = 40

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self.rejected = 0  # candidate frames thrown away (bad CRC or length)
        self.discarded = 0  # bytes that turned out to belong to no frame
        self.junk_sample = b""  # the first discarded bytes, to show in an error message

    @property
    def pending(self) -> int:
        """Bytes held back as the start of a frame that has not finished arriving."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                # keep a trailing first sync byte: its partner may be in the next read
                keep = len(buf) - 1 if len(buf) > pos and buf[-1] == SYNC[0] else len(buf)
                self._discard(pos, keep)
                pos = keep
                break
            self._discard(pos, start)
            frame, end = self._frame_at(start)
            if frame is not None:
                frames.append(frame)
                pos = end
                continue
            if end < 0:  # impossible length or bad CRC: drop the sync byte, search on
                self.rejected += 1
                self._discard(start, start + 1)
                pos = start + 1
                continue
            later = self._complete_frame_after(start + 1)
            if later is None:  # an honest frame still arriving (or a phantom with nothing behind)
                pos = start
                break
            self.rejected += 1
            self._discard(start, later)
            pos = later
        del buf[:pos]
        return frames

    def _frame_at(self, start: int) -> tuple[Frame | None, int]:
        """(frame, end) for a whole good frame at ``start``; (None, -1) if it cannot be one (bad
        length or CRC); (None, 0) if it may still be completed by more bytes."""
        buf = self._buf
        if len(buf) - start < HEADER_BYTES:
            return None, 0
        _, type_, seq, length = _HEADER.unpack_from(buf, start)
        if length > self.max_payload:
            return None, -1
        end = start + HEADER_BYTES + length + CRC_BYTES
        if len(buf) < end:
            return None, 0
        body = bytes(buf[start + 2 : start + HEADER_BYTES + length])
        (crc,) = struct.unpack_from("<I", buf, end - CRC_BYTES)
        if crc != crc32(body):
            return None, -1
        return Frame(type_, seq, body[4:]), end

    def _complete_frame_after(self, pos: int) -> int | None:
        """Start of the first whole, CRC-correct frame at or after ``pos``, if any."""
        while (start := self._buf.find(SYNC, pos)) >= 0:
            if self._frame_at(start)[0] is not None:
                return start
            pos = start + 1
        return None

    def _discard(self, start: int, end: int) -> None:
        if end <= start:
            return
        self.discarded += end - start
        if len(self.junk_sample) < self._JUNK_SAMPLE:
            self.junk_sample += bytes(self._buf[start : start + self._JUNK_SAMPLE - len(self.junk_sample)])

    def clear(self) -> None:
        """Forget buffered bytes (a partial frame that will never complete)."""
        self._discard(0, len(self._buf))
        self._buf.clear()


@dataclass(frozen=True)
class TensorSpec:
    dtype: type
    shape: tuple[int, ...]
    nbytes: int
    scale: float
    zero_point: int


@dataclass(frozen=True)
class DeviceInfo:
    """What the device reports in the handshake."""

    protocol_version: int
    model_hash: bytes  # SHA-256 of the .tflite the firmware was built from
    runtime: str  # "native" | "tflm" | ...
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    arena_bytes: int
    clock_hz: int
    max_payload: int
    init_status: int  # td_model_init()'s result; 0 = ready


@dataclass(frozen=True)
class Timing:
    """One inference as the device measured it, plus the host's wall time for the exchange."""

    device_us: int
    cycles: int  # 0 when the board cannot count cycles
    wall_s: float


@dataclass(frozen=True)
class StepTiming:
    """One step of the last inference as the device timed it (OP_TIMINGS): it ran ``ops``
    consecutive model ops from op ``op`` on (a native row stream runs several), and took ``cycles``
    (``td_hal_cycles()``, 0 where the board cannot count them) and ``micros`` since the step before."""

    op: int
    ops: int
    cycles: int
    micros: int


@dataclass(frozen=True)
class OpTimings:
    """Every step of the device's last inference, in the order they ran."""

    steps: tuple[StepTiming, ...]
    dropped: int  # steps the device ran but had no room to record

    @property
    def cycles(self) -> int:
        return sum(s.cycles for s in self.steps)

    @property
    def micros(self) -> int:
        return sum(s.micros for s in self.steps)


@dataclass(frozen=True)
class _InvokeReport:
    device_us: int
    cycles: int
    input_crc: int
    output_crc: int


_REPORT = struct.Struct("<IIII")
_TIMINGS_HEAD = struct.Struct("<HHHH")   # steps, first, dropped, entries in this frame
_TIMING_ENTRY = struct.Struct("<HBxII")  # op, ops, (0), cycles, micros
_HELLO_FIXED = struct.Struct("<BBBBHhII32s")
_SPEC_FIXED = struct.Struct("<BBIfi")
_REFLASH = "rebuild and reflash the firmware with this tinydeploy"


def _malformed(what: str) -> DeviceError:
    return DeviceError(f"the device's handshake is malformed: {what}", _REFLASH)


def parse_hello(payload: bytes) -> DeviceInfo:
    """Decode and check a HELLO response payload (layout in PROTOCOL.md); anything that does not
    follow the spec is a DeviceError naming the field."""
    if not payload:
        raise _malformed("it is empty")
    if payload[0] != PROTOCOL_VERSION:
        raise DeviceError(f"the device speaks protocol v{payload[0]}, tinydeploy v{PROTOCOL_VERSION}", _REFLASH)
    if len(payload) < _HELLO_FIXED.size:
        raise _malformed(f"{len(payload)} bytes, the fixed part alone is {_HELLO_FIXED.size}")
    version, n_in, n_out, name_len, max_payload, init_status, clock, arena, digest = (
        _HELLO_FIXED.unpack_from(payload))
    if max_payload < MIN_MAX_PAYLOAD:
        raise _malformed(f"max_payload is {max_payload} bytes, the protocol needs at least {MIN_MAX_PAYLOAD}")
    if name_len > MAX_RUNTIME_NAME:
        raise _malformed(f"a {name_len}-byte runtime name (at most {MAX_RUNTIME_NAME})")
    if n_in == 0 or n_out == 0:
        raise _malformed(f"a model with {n_in} inputs and {n_out} outputs")
    at = _HELLO_FIXED.size
    name = payload[at : at + name_len]
    if len(name) < name_len or not all(32 <= b < 127 for b in name):
        raise _malformed("the runtime name is cut short or not printable ASCII")
    at += name_len
    specs = []
    for i in range(n_in + n_out):
        what = f"input {i}" if i < n_in else f"output {i - n_in}"
        if len(payload) < at + _SPEC_FIXED.size:
            raise _malformed(f"it ends inside the spec of {what}")
        dtype, rank, nbytes, scale, zp = _SPEC_FIXED.unpack_from(payload, at)
        at += _SPEC_FIXED.size
        if dtype not in DTYPES:
            raise _malformed(f"{what} has dtype code {dtype} (known: {sorted(DTYPES)})")
        if rank > MAX_RANK:
            raise _malformed(f"{what} has rank {rank} (the protocol allows at most {MAX_RANK})")
        if len(payload) < at + 4 * rank:
            raise _malformed(f"it ends inside the shape of {what}")
        shape = struct.unpack_from(f"<{rank}i", payload, at)
        at += 4 * rank
        if any(d < 1 for d in shape):
            raise _malformed(f"{what} has shape {shape}")
        if not math.isfinite(scale) or scale < 0:
            raise _malformed(f"{what} has scale {scale}")
        specs.append(TensorSpec(DTYPES[dtype], tuple(shape), nbytes, scale, zp))
    if at != len(payload):
        raise _malformed(f"{len(payload) - at} bytes after the last tensor spec")
    if init_status == 0:  # a runtime that failed to initialise reports sizes of 0; said elsewhere
        for i, spec in enumerate(specs):
            expected = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
            if spec.nbytes != expected:
                what = f"input {i}" if i < n_in else f"output {i - n_in}"
                raise _malformed(f"{what} is {spec.nbytes} bytes, but its shape {spec.shape} of "
                                 f"{np.dtype(spec.dtype).name} is {expected}")
    return DeviceInfo(version, digest, name.decode("ascii"), tuple(specs[:n_in]), tuple(specs[n_in:]),
                      arena, clock, max_payload, init_status)


#: td_model_init() results of the TFLM runtime (firmware/tflm/td_runtime_tflm.cc): problem, fix.
_TFLM_INIT_FAILURES = {
    -1: ("TFLM was never initialised", "the firmware must start with td_link_serve_forever(); rebuild it"),
    -2: ("the model's .tflite schema version is not the one this TFLM library reads",
         "rebuild with the TFLM library the project pins"),
    -3: ("TFLM could not register the model's operators (op_resolver.h)", "rebuild the project with --force"),
    -4: ("TFLM could not allocate its tensor arena (AllocateTensors failed)",
         "rebuild with a larger arena (TD_ARENA_BYTES in src/model_settings.h)"),
}


def init_failure(runtime: str, status: int) -> DeviceError:
    """The error for a device whose ``td_model_init()`` returned ``status`` (non-zero)."""
    if runtime == "tflm" and status in _TFLM_INIT_FAILURES:
        problem, fix = _TFLM_INIT_FAILURES[status]
        return DeviceError(f"the model did not initialise on the device: {problem} (status {status})", fix)
    return DeviceError(f"the model did not initialise on the device: the {runtime} runtime's "
                       f"td_model_init() returned {status}", "rebuild and reflash the firmware")


def _open_port(port: str, baudrate: int, open_timeout: float):
    """Open ``port`` (path or pyserial URL), retrying up to ``open_timeout`` s (QEMU starting up)."""
    import serial

    is_url = "://" in port
    deadline = time.monotonic() + open_timeout
    while True:
        try:
            if is_url:
                return serial.serial_for_url(port, baudrate=baudrate, timeout=_READ_SLICE_S)
            opened = serial.Serial(port, baudrate=baudrate, timeout=_READ_SLICE_S, exclusive=True)
            opened.reset_input_buffer()  # whatever a previous session left unread
            return opened
        except (serial.SerialException, OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise DeviceError(
                    f"cannot open serial port {port}: {exc}",
                    "check the cable and --port; `python -m serial.tools.list_ports` lists ports",
                ) from exc
            time.sleep(0.05)


class _Resend(Exception):
    """The current attempt is over: its frame arrived damaged, or the answer did."""


#: What _await returns when the PING probe it listened for was echoed.
_ECHOED = object()


@dataclass
class _Evidence:
    """What came from the device while one request went unanswered, to say what is wrong with it."""

    start: float
    rejected0: int
    discarded0: int
    received: int = 0
    late: int = 0  # answers to earlier frames still owed an answer (legitimate on a slow line)
    unexpected: int = 0  # OK answers to frames never sent, or answered already
    unexpected_seqs: tuple = ()
    transport_errors: int = 0
    last_byte: float | None = None


class DeviceLink:
    """A connection to one running firmware.

    ``port_or_url`` is a port path, a pyserial URL, or an already open serial object.

    Waits: a reply may take ``timeout`` s (latency) plus its bytes' transfer time at
    ``bytes_per_s`` (default: half the nominal rate of ``baudrate``); an INVOKE or RUN reply
    ``invoke_timeout`` s plus transfer — once inferences have been seen, at most
    :data:`SLOWDOWN_BOUND` times the slowest plus latency before the device is probed. Each request
    is tried at most ``attempts`` times; a device that stays silent through a PING probe after a
    wait ran out, replays answers or babbles is given up on at once.
    """

    def __init__(self, port_or_url, *, timeout: float = REPLY_LATENCY_S, invoke_timeout: float = 10.0,
                 attempts: int = 5, baudrate: int = 115200, open_timeout: float = 0.0,
                 bytes_per_s: float | None = None):
        if isinstance(port_or_url, (str, os.PathLike)):
            self._serial = _open_port(os.fspath(port_or_url), baudrate, open_timeout)
            self.port = os.fspath(port_or_url)
        else:
            self._serial = port_or_url
            self._serial.timeout = _READ_SLICE_S
            self.port = getattr(port_or_url, "port", None) or repr(port_or_url)
        try:  # ports select() can wait on are read in blocks, without polling
            self._fd = self._serial.fileno()
            self._serial.timeout = 0
        except (AttributeError, OSError, ValueError, NotImplementedError):
            self._fd = None
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.attempts = max(1, attempts)
        self.bytes_per_s = bytes_per_s or link_bytes_per_s(baudrate, emulated=False)
        self._decoder = FrameDecoder()
        # A random first seq: answers a previous session left in the line cannot pass for ours.
        self._seq = os.urandom(1)[0]
        self._owed: OrderedDict[int, int] = OrderedDict()  # seq -> request type, still unanswered
        self.info: DeviceInfo | None = None
        self.resends = 0  # exchanges repeated because of a transport fault (for reports/tests)
        self.late_answers = 0  # answers taken from an earlier attempt of the same request
        self.probes = 0  # PING probes sent after an unanswered attempt
        self.damage_reports: Counter[str] = Counter()  # the device's CRC/TIMEOUT/TOO_LONG answers
        self._slowest_inference = None  # longest INVOKE/RUN exchange seen, in s

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> DeviceLink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._serial.close()

    # -- the exchange ---------------------------------------------------------------------------
    def request(self, req: int, payload: bytes = b"", timeout: float | None = None, *,
                inference: bool = False) -> bytes:
        """Send one request, return the OK payload.

        ``timeout`` replaces the latency allowance of this request (its transfer time is added).
        An answer to any attempt of this request counts (requests are idempotent), so a line slower
        than expected costs time, not the exchange. A transport error for the current attempt, or a
        damaged answer, is resent at once; an attempt that gets no answer in time is followed by a
        PING probe, and a device that stays silent through it is reported as gone.
        """
        limit = self.info.max_payload if self.info else DEFAULT_MAX_PAYLOAD
        if len(payload) > limit:
            raise ValueError(f"a {len(payload)}-byte payload exceeds the device's {limit}-byte frames")
        allowance = timeout if timeout is not None else (
            self._inference_allowance() if inference else self.timeout)
        evidence = self._new_evidence()
        seqs: set[int] = set()
        for attempt in range(self.attempts):
            if attempt:
                self.resends += 1
            frame = self._send(req, payload)
            seqs.add(self._seq)
            started = time.monotonic()
            wait = allowance + self._transfer_s(len(frame))
            try:
                answer = self._await(seqs, started + wait, evidence)
            except _Resend:
                continue
            if answer is None:
                # Nothing for this request in time. While a long inference may still be running,
                # the probe keeps listening for its answer up to the full inference bound.
                hold = started + self.invoke_timeout + self._transfer_s(len(frame)) if inference else None
                answer = self._probe(seqs, evidence, hold)
                if answer is None:
                    continue  # the device is there: the frame or its answer was lost
            return self._answer(req, answer)
        raise DeviceError(
            f"no valid answer from the device on {self.port} to {_name(Request, req)} after "
            f"{self.attempts} attempts ({self._describe(evidence)})",
            "check the cable and that the board runs tinydeploy firmware at the right baud rate, or reset it",
        )

    def _send(self, req: int, payload: bytes) -> bytes:
        self._seq = (self._seq + 1) & 0xFF
        frame = encode_frame(req, self._seq, payload)
        self._owed[self._seq] = req
        self._owed.move_to_end(self._seq)
        while len(self._owed) > 128:  # half the seq space: older answers are not waited for
            self._owed.popitem(last=False)
        try:
            self._serial.write(frame)
        except OSError as exc:
            raise self._lost(exc) from exc
        return frame

    def _transfer_s(self, sent: int) -> float:
        """Time to move ``sent`` bytes out and the longest possible answer back."""
        reply = (self.info.max_payload if self.info else 1024) + FRAME_OVERHEAD
        return (sent + reply) / self.bytes_per_s

    def _answer(self, req: int, frame: Frame) -> bytes:
        if frame.type == RSP_OK:
            return frame.payload
        code, detail = _error_fields(frame.payload)
        raise self._application_error(req, code, detail)

    def _read(self, wait: float) -> bytes:
        """Whatever has arrived, waiting up to ``wait`` s for the first byte."""
        try:
            if self._fd is not None:
                ready, _, _ = select.select([self._fd], [], [], max(0.0, wait))
                return self._serial.read(65536) if ready else b""
            self._serial.timeout = min(max(wait, 0.001), _READ_SLICE_S)
            data = self._serial.read(1)
            if data and self._serial.in_waiting:
                data += self._serial.read(self._serial.in_waiting)
            return data
        except (OSError, ValueError) as exc:  # pyserial's SerialException is an OSError too
            raise self._lost(exc) from exc

    def _new_evidence(self) -> _Evidence:
        self._decoder.junk_sample = b""  # so an error shows this request's junk, not older
        return _Evidence(time.monotonic(), self._decoder.rejected, self._decoder.discarded)

    def _await(self, seqs: set[int], deadline: float, ev: _Evidence, *,
               probe: tuple[int, bytes] | None = None):
        """Read until an answer to one of ``seqs`` arrives (returned), the deadline passes (None),
        or - with ``probe`` (seq, token) - the probe's echo arrives (_ECHOED). Without ``probe``,
        a transport error for the newest attempt, or a damaged frame followed by silence (the
        answer was hit on the way), raises _Resend."""
        newest = self._seq if probe is None else None
        damaged_at = None
        while (now := time.monotonic()) < deadline:
            wait = deadline - now
            if damaged_at is not None:
                wait = min(wait, damaged_at + _QUIET_AFTER_DAMAGE_S - now)
            data = self._read(wait)
            if data:
                ev.received += len(data)
                ev.last_byte = time.monotonic()
            rejected = self._decoder.rejected
            for frame in self._decoder.feed(data):
                owed = self._owed.pop(frame.seq, None) is not None
                if frame.type in (RSP_OK, RSP_ERROR) and frame.seq in seqs:
                    code, _ = _error_fields(frame.payload) if frame.type == RSP_ERROR else (0, 0)
                    if code not in TRANSPORT_ERRORS:
                        if frame.seq != newest:
                            self.late_answers += 1
                        return frame
                    ev.transport_errors += 1
                    self.damage_reports[_name(ErrorCode, code)] += 1
                    if frame.seq == newest:
                        raise _Resend
                    continue  # an earlier attempt's damage report: that attempt is superseded
                if probe is not None and frame.type == RSP_OK and frame.seq == probe[0]:
                    if frame.payload == probe[1]:
                        return _ECHOED
                if owed or frame.type != RSP_OK:
                    ev.late += 1  # a late answer to an abandoned frame, or a damaged request's report
                else:
                    ev.unexpected += 1
                    ev.unexpected_seqs = (ev.unexpected_seqs + (frame.seq,))[-4:]
            self._check_babble(ev)
            if self._decoder.rejected != rejected:
                damaged_at = time.monotonic()
            elif data and damaged_at is not None:
                damaged_at = time.monotonic()
            if probe is None and damaged_at is not None and not data \
                    and time.monotonic() - damaged_at >= _QUIET_AFTER_DAMAGE_S:
                raise _Resend
        return None

    def _check_babble(self, ev: _Evidence) -> None:
        junk = self._decoder.discarded - ev.discarded0
        if junk > JUNK_LIMIT:
            raise DeviceError(f"the device on {self.port} sends bytes that are not tinydeploy frames "
                              f"({junk:,} B while waiting for one answer, starting "
                              f"{self._decoder.junk_sample[:24]!r})",
                              "check that the board runs tinydeploy firmware at the right baud rate")
        if ev.unexpected >= REPLAY_LIMIT:
            seqs = ", ".join(str(s) for s in ev.unexpected_seqs)
            raise DeviceError(f"the device on {self.port} sends answers to requests it was not sent or "
                              f"answered already (sequence numbers {seqs}): it replays old answers",
                              "reset the board; if it persists, rebuild and reflash the firmware")
        if ev.late > STALE_LIMIT:
            raise DeviceError(f"the device on {self.port} sends a stream of answers to other requests "
                              f"({ev.late} while waiting for one)", "reset the board and run again")

    def _probe(self, seqs: set[int], ev: _Evidence, hold: float | None) -> Frame | None:
        """After an unanswered attempt: PING the device. Returns a late answer to the request if one
        arrives meanwhile, and None when the device echoes the probe (it is there: resend) or at
        least sends something (a lossy line; the attempts bound it). Raises a DeviceError when the
        device stays silent - listening until ``hold`` at least, while an inference may run."""
        for _ in range(PROBE_TRIES):
            heard = ev.received
            token = os.urandom(8)
            frame = self._send(Request.PING, token)
            self.probes += 1
            deadline = time.monotonic() + self.timeout + self._transfer_s(len(frame))
            if hold is not None:
                deadline = max(deadline, hold)
            answer = self._await(seqs, deadline, ev, probe=(self._seq, token))
            if answer is _ECHOED:
                return None
            if answer is not None:
                return answer
            if ev.received != heard:
                return None
        raise self._gone(ev)

    def _gone(self, ev: _Evidence) -> DeviceError:
        now = time.monotonic()
        fix = "check that the board is powered and running tinydeploy firmware, or reset it"
        if ev.received == 0:
            return DeviceError(f"the device on {self.port} stopped answering: nothing received for "
                               f"{now - ev.start:.1f} s", fix)
        quiet = now - (ev.last_byte or ev.start)
        if self._decoder.pending:
            return DeviceError(f"the device on {self.port} stopped in the middle of a frame "
                               f"({self._decoder.pending} B of it arrived, then nothing for {quiet:.1f} s)", fix)
        return DeviceError(f"the device on {self.port} stopped answering: nothing for {quiet:.1f} s "
                           f"after {self._describe(ev)}", fix)

    def _describe(self, ev: _Evidence) -> str:
        parts = []
        damaged = self._decoder.rejected - ev.rejected0
        junk = self._decoder.discarded - ev.discarded0
        if damaged:
            parts.append(f"{damaged} damaged frames (wrong CRC or impossible length)")
        if ev.transport_errors:
            parts.append(f"{ev.transport_errors} reports of damaged requests")
        if ev.late or ev.unexpected:
            parts.append(f"{ev.late + ev.unexpected} answers to other requests")
        if junk:
            parts.append(f"{junk:,} B that were no frame, starting {self._decoder.junk_sample[:16]!r}")
        if self._decoder.pending:
            parts.append(f"{self._decoder.pending} B of an unfinished frame")
        if not ev.received:
            parts.append("nothing received")
        return "; ".join(parts) or f"{ev.received:,} B received"

    def _lost(self, exc: Exception) -> DeviceError:
        return DeviceError(f"lost the connection to the device on {self.port} ({exc})",
                           "the board reset, was unplugged or the emulator stopped; run again")

    def _application_error(self, req: int, code: int, detail: int) -> DeviceError:
        name, req_name = _name(ErrorCode, code), _name(Request, req)
        if req == Request.OP_TIMINGS and code in (ErrorCode.UNSUPPORTED, ErrorCode.UNKNOWN_TYPE):
            return DeviceError(f"the firmware on {self.port} answers OP_TIMINGS with {name}: it was "
                               "built without per-layer profiling",
                               "emulated boards: 'tinydeploy validate --profile' builds the profiling "
                               "firmware itself; real boards: add -DTD_PROFILE to build_flags in "
                               "platformio.ini, 'tinydeploy flash' and run again")
        if code == ErrorCode.RUNTIME:
            runtime = self.info.runtime if self.info else "model"
            if self.info is not None and self.info.init_status != 0:
                return init_failure(runtime, self.info.init_status)
            if runtime == "tflm" and detail == -5:
                return DeviceError(f"TFLM's Invoke() failed on the device ({req_name})",
                                   "see the board's serial log; the model may need an op this build lacks")
            return DeviceError(f"the {runtime} runtime on the device failed ({req_name}: returned {detail})",
                               "rebuild and reflash the firmware; if it persists, report the model")
        return DeviceError(f"the device refused {req_name}: {name} (detail {detail})",
                           "host and firmware disagree about the model; rebuild and reflash")

    # -- requests -------------------------------------------------------------------------------
    def _inference_allowance(self) -> float:
        """``invoke_timeout`` until an inference has been seen; then at most SLOWDOWN_BOUND times the
        slowest one plus latency, so a board that stops answering is probed in seconds."""
        if self._slowest_inference is None:
            return self.invoke_timeout
        return min(self.invoke_timeout, self.timeout + SLOWDOWN_BOUND * self._slowest_inference)

    def _inference_request(self, req: Request, payload: bytes = b"") -> bytes:
        start = time.monotonic()
        reply = self.request(req, payload, inference=True)
        took = time.monotonic() - start
        self._slowest_inference = max(took, self._slowest_inference or 0.0)
        return reply

    def ping(self, payload: bytes = b"") -> bytes:
        """Echo ``payload`` (up to max_payload bytes) - a round trip without inference."""
        return self.request(Request.PING, payload)

    def hello(self, expected_hash: bytes | None = None, *, require_ready: bool = True) -> DeviceInfo:
        """Handshake. With ``expected_hash``, refuse firmware built from another model; with
        ``require_ready`` (the default), refuse a device whose runtime failed to initialise."""
        info = parse_hello(self.request(Request.HELLO))
        if expected_hash is not None and info.model_hash != expected_hash:
            raise DeviceError(
                f"the device runs another model (hash {info.model_hash.hex()[:12]}, expected {expected_hash.hex()[:12]})",
                "flash the firmware built from this model first",
            )
        self.info = info
        self._decoder.max_payload = info.max_payload
        if require_ready and info.init_status != 0:
            raise init_failure(info.runtime, info.init_status)
        return info

    def _require_info(self) -> DeviceInfo:
        return self.info if self.info is not None else self.hello()

    def set_input(self, index: int, data, offset: int = 0) -> None:
        """Write input tensor ``index`` (bytes or array), chunked to the device's max payload."""
        raw = _as_bytes(data)
        step = self._require_info().max_payload - 5
        for at in range(0, max(len(raw), 1), step):
            self.request(Request.SET_INPUT, struct.pack("<BI", index, offset + at) + raw[at : at + step])

    def invoke(self) -> Timing:
        """Run one inference on the inputs already set."""
        start = time.monotonic()
        report = _parse_report(self._inference_request(Request.INVOKE))
        return Timing(report.device_us, report.cycles, time.monotonic() - start)

    def get_output(self, index: int) -> np.ndarray:
        """Read output tensor ``index`` as an array of its dtype and shape."""
        spec = self._require_info().outputs[index]
        return _as_array(self._read_output(index, 0, spec.nbytes), spec)

    def _read_output(self, index: int, offset: int, length: int) -> bytes:
        step = self._require_info().max_payload
        chunks = []
        for at in range(offset, offset + length, step):
            n = min(step, offset + length - at)
            chunk = self.request(Request.GET_OUTPUT, struct.pack("<BIH", index, at, n))
            if len(chunk) != n:
                raise DeviceError(f"the device sent {len(chunk)} output bytes, {n} asked",
                                  "rebuild and reflash the firmware")
            chunks.append(chunk)
        return b"".join(chunks)

    def op_timings(self) -> OpTimings:
        """The per-step timings of the device's last inference (OP_TIMINGS; PROTOCOL.md), read in
        as many exchanges as the steps need. A firmware built without profiling (TD_PROFILE)
        answers UNSUPPORTED: a DeviceError saying how to build one."""
        self._require_info()
        steps: list[StepTiming] = []
        total = dropped = None
        while total is None or len(steps) < total:
            reply = self.request(Request.OP_TIMINGS, struct.pack("<H", len(steps)))
            if len(reply) < _TIMINGS_HEAD.size:
                raise _bad_timings(f"{len(reply)} bytes, the header alone is {_TIMINGS_HEAD.size}")
            count, first, lost, here = _TIMINGS_HEAD.unpack_from(reply)
            if first != len(steps):
                raise _bad_timings(f"it starts at step {first}, step {len(steps)} was asked")
            if total is not None and (count, lost) != (total, dropped):
                raise _bad_timings("the number of steps changed between two requests")
            total, dropped = count, lost
            if len(reply) != _TIMINGS_HEAD.size + here * _TIMING_ENTRY.size or first + here > total:
                raise _bad_timings(f"{len(reply)} bytes for {here} of {total} steps from step {first}")
            if here == 0 and first < total:
                raise _bad_timings(f"no steps from step {first} of {total}")
            for k in range(here):
                op, ops, cycles, micros = _TIMING_ENTRY.unpack_from(
                    reply, _TIMINGS_HEAD.size + k * _TIMING_ENTRY.size)
                steps.append(StepTiming(op, ops, cycles, micros))
        return OpTimings(tuple(steps), dropped or 0)

    def run(self, inputs) -> tuple[list[np.ndarray], Timing]:
        """Set every input, invoke and read every output in as few exchanges as the payload allows.

        The device reports CRC-32s of the inputs it computed on and the outputs it produced; a
        mismatch (a reset mid-run, a stale tensor, outputs damaged on the way) is retried once and
        then reported, naming which CRC failed.
        """
        info = self._require_info()
        raws = [_as_bytes(x) for x in inputs]
        _check_input_sizes(info, raws)
        sent_crc = crc32(b"".join(raws))
        for attempt in range(2):
            start = time.monotonic()
            report, outputs = self._run_once(info, raws)
            wall = time.monotonic() - start
            got_crc = crc32(b"".join(outputs))
            if report.input_crc == sent_crc and report.output_crc == got_crc:
                arrays = [_as_array(raw, spec) for raw, spec in zip(outputs, info.outputs)]
                return arrays, Timing(report.device_us, report.cycles, wall)
            self.resends += 1
        if report.input_crc != sent_crc:
            raise DeviceError(f"the device computed on inputs other than those sent (input CRC "
                              f"{report.input_crc:08x}, sent {sent_crc:08x}): did it reset mid-run?",
                              "check the board's power and reset line, then run again")
        raise DeviceError(f"the outputs read back do not match the CRC the device computed over them "
                          f"(output CRC {report.output_crc:08x}, read {got_crc:08x}): they were "
                          "damaged on the way or changed between RUN and GET_OUTPUT",
                          "check the cable and the board's power, then run again")

    def _run_once(self, info: DeviceInfo, raws: list[bytes]) -> tuple[_InvokeReport, list[bytes]]:
        step = info.max_payload - 5
        pieces = [(i, at, raw[at : at + step]) for i, raw in enumerate(raws) for at in range(0, len(raw), step)]
        last = pieces.pop() if pieces else (0, 0, b"")
        for index, at, chunk in pieces:
            self.request(Request.SET_INPUT, struct.pack("<BI", index, at) + chunk)
        reply = self._inference_request(Request.RUN, struct.pack("<BI", last[0], last[1]) + last[2])
        report = _parse_report(reply)
        head = reply[_REPORT.size :]
        total = sum(spec.nbytes for spec in info.outputs)
        expected = min(total, info.max_payload - _REPORT.size)
        if len(head) != expected:
            raise DeviceError(f"the device's RUN answer carries {len(head)} output bytes, "
                              f"{expected} expected", _REFLASH)
        outputs, at = [], 0
        for index, spec in enumerate(info.outputs):
            have = head[at : at + spec.nbytes]
            at += len(have)
            rest = self._read_output(index, len(have), spec.nbytes - len(have)) if len(have) < spec.nbytes else b""
            outputs.append(have + rest)
        return report, outputs


def _error_fields(payload: bytes) -> tuple[int, int]:
    if len(payload) < 4:
        return ErrorCode.CRC, 0  # a malformed error frame: treat as a transport fault
    code, _req, detail = struct.unpack_from("<BBh", payload)
    return code, detail


def _bad_timings(what: str) -> DeviceError:
    return DeviceError(f"the device's OP_TIMINGS answer is malformed: {what}", _REFLASH)


def _name(enum: type[IntEnum], value: int) -> str:
    return enum(value).name if value in enum._value2member_map_ else f"code {value}"


def _parse_report(payload: bytes) -> _InvokeReport:
    if len(payload) < _REPORT.size:
        raise DeviceError(f"the device's invoke report is {len(payload)} bytes, {_REPORT.size} expected",
                          _REFLASH)
    return _InvokeReport(*_REPORT.unpack_from(payload))


def _as_bytes(data) -> bytes:
    return bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else np.ascontiguousarray(data).tobytes()


def _as_array(raw: bytes, spec: TensorSpec) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=spec.dtype)
    return arr.reshape(spec.shape) if int(np.prod(spec.shape)) == arr.size else arr


def _check_input_sizes(info: DeviceInfo, raws: list[bytes]) -> None:
    if len(raws) != len(info.inputs):
        raise InputError(f"the model on the device takes {len(info.inputs)} inputs, {len(raws)} given",
                          "pass one array per model input")
    for i, (raw, spec) in enumerate(zip(raws, info.inputs)):
        if len(raw) != spec.nbytes:
            raise InputError(f"input {i} is {len(raw)} bytes, the device expects {spec.nbytes}",
                              "give samples of the model's input shape and dtype")
