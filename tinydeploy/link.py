"""Host side of the serial protocol (the spec is ``firmware/PROTOCOL.md``; the device side is
``firmware/protocol/td_link.c``).

:class:`DeviceLink` talks to one running firmware over anything pyserial can open: a real port
(``/dev/ttyACM0``), a pty, or ``socket://127.0.0.1:PORT`` for QEMU. Every request gets exactly one
response; a garbled exchange is detected (CRC, sequence number, timeouts) and resent a bounded
number of times, so a caller either gets correct bytes or a :class:`~tinydeploy.errors.DeviceError`
within a bounded time — never a corrupted result, never a hang.

The pure frame functions (:func:`encode_frame`, :class:`FrameDecoder`) are exposed for tests.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from tinydeploy.errors import DeviceError, InputError

PROTOCOL_VERSION = 1
SYNC = b"\xa5\x5a"
_HEADER = struct.Struct("<2sBBH")  # sync, type, seq, payload length
HEADER_BYTES = _HEADER.size
CRC_BYTES = 4
#: A read returns as soon as a byte arrives; this only bounds how late a deadline is noticed.
_READ_SLICE_S = 0.05
#: Longest payload the host accepts before it knows the device's own limit (from HELLO).
DEFAULT_MAX_PAYLOAD = 4096


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
    on, so a genuine frame that follows (or hides inside) garbage is still found.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self.rejected = 0  # candidate frames thrown away (bad CRC or length)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> Frame | None:
        while True:
            start = self._buf.find(SYNC)
            if start < 0:
                # keep a trailing first sync byte: its partner may be in the next read
                del self._buf[: len(self._buf) - 1 if self._buf.endswith(SYNC[:1]) else len(self._buf)]
                return None
            del self._buf[:start]
            if len(self._buf) < HEADER_BYTES:
                return None
            _, type_, seq, length = _HEADER.unpack_from(self._buf)
            if length > self.max_payload:
                self._reject()
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self._buf) < end:
                return None
            body = bytes(self._buf[2 : HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<I", self._buf, HEADER_BYTES + length)
            if crc != crc32(body):
                self._reject()
                continue
            del self._buf[:end]
            return Frame(type_, seq, body[4:])

    def clear(self) -> None:
        """Forget buffered bytes (a partial frame that will never complete)."""
        self._buf.clear()

    def _reject(self) -> None:
        del self._buf[:1]
        self.rejected += 1


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
class _InvokeReport:
    device_us: int
    cycles: int
    input_crc: int
    output_crc: int


_REPORT = struct.Struct("<IIII")
_HELLO_FIXED = struct.Struct("<BBBBHhII32s")
_SPEC_FIXED = struct.Struct("<BBIfi")


def parse_hello(payload: bytes) -> DeviceInfo:
    """Decode a HELLO response payload (layout in PROTOCOL.md)."""
    try:
        version, n_in, n_out, name_len, max_payload, init_status, clock, arena, digest = (
            _HELLO_FIXED.unpack_from(payload)
        )
        at = _HELLO_FIXED.size
        runtime = payload[at : at + name_len].decode("ascii", "replace")
        at += name_len
        specs = []
        for _ in range(n_in + n_out):
            dtype, rank, nbytes, scale, zp = _SPEC_FIXED.unpack_from(payload, at)
            at += _SPEC_FIXED.size
            shape = struct.unpack_from(f"<{rank}i", payload, at)
            at += 4 * rank
            specs.append(TensorSpec(DTYPES.get(dtype, np.int8), tuple(shape), nbytes, scale, zp))
    except struct.error as exc:
        raise DeviceError(f"the device's handshake is malformed ({exc})", "rebuild and reflash the firmware") from exc
    return DeviceInfo(version, digest, runtime, tuple(specs[:n_in]), tuple(specs[n_in:]),
                      arena, clock, max_payload, init_status)


def _open_port(port: str, baudrate: int, open_timeout: float):
    """Open ``port`` (path or pyserial URL), retrying up to ``open_timeout`` s (QEMU starting up)."""
    import serial

    is_url = "://" in port
    deadline = time.monotonic() + open_timeout
    while True:
        try:
            if is_url:
                return serial.serial_for_url(port, baudrate=baudrate, timeout=_READ_SLICE_S)
            return serial.Serial(port, baudrate=baudrate, timeout=_READ_SLICE_S, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise DeviceError(
                    f"cannot open serial port {port}: {exc}",
                    "check the cable and --port; `python -m serial.tools.list_ports` lists ports",
                ) from exc
            time.sleep(0.05)


class DeviceLink:
    """A connection to one running firmware.

    ``port_or_url`` is a port path, a pyserial URL, or an already open serial object. ``timeout``
    bounds every exchange except inference; ``invoke_timeout`` bounds INVOKE/RUN. Each request is
    tried at most ``attempts`` times.
    """

    def __init__(self, port_or_url, *, timeout: float = 2.0, invoke_timeout: float = 60.0,
                 attempts: int = 5, baudrate: int = 115200, open_timeout: float = 0.0):
        if isinstance(port_or_url, (str, os.PathLike)):
            self._serial = _open_port(os.fspath(port_or_url), baudrate, open_timeout)
            self.port = os.fspath(port_or_url)
        else:
            self._serial = port_or_url
            self._serial.timeout = _READ_SLICE_S
            self.port = getattr(port_or_url, "port", None) or repr(port_or_url)
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.attempts = attempts
        self._decoder = FrameDecoder()
        self._seq = 0
        self.info: DeviceInfo | None = None
        self.resends = 0  # exchanges repeated because of a transport fault (for reports/tests)
        self._slowest_inference = None  # longest INVOKE/RUN exchange seen, in s

    # -- context manager ------------------------------------------------------------------------
    def __enter__(self) -> DeviceLink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._serial.close()

    # -- the exchange ---------------------------------------------------------------------------
    def request(self, req: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send one request, return the OK payload. Resends on transport faults and timeouts."""
        timeout = self.timeout if timeout is None else timeout
        limit = self.info.max_payload if self.info else DEFAULT_MAX_PAYLOAD
        if len(payload) > limit:
            raise ValueError(f"a {len(payload)}-byte payload exceeds the device's {limit}-byte frames")
        for attempt in range(self.attempts):
            if attempt:
                self.resends += 1
            self._seq = (self._seq + 1) & 0xFF
            self._write(encode_frame(req, self._seq, payload))
            frame = self._await(self._seq, time.monotonic() + timeout)
            if frame is None:
                # A corrupted length field can leave a phantom frame waiting to swallow the
                # real replies; whatever is buffered belongs to an abandoned attempt anyway.
                self._decoder.clear()
                continue
            if frame.type == RSP_OK:
                return frame.payload
            code, detail = _error_fields(frame.payload)
            if code in TRANSPORT_ERRORS:
                continue
            raise _application_error(req, code, detail)
        raise DeviceError(
            f"no valid answer from the device on {self.port} to {_name(Request, req)} after {self.attempts} attempts",
            "check that the board runs tinydeploy firmware at the right baud rate, or reset it",
        )

    def _write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except OSError as exc:
            raise self._lost(exc) from exc

    def _await(self, seq: int, deadline: float) -> Frame | None:
        """Read until the response to ``seq`` (or a transport error for it) arrives, or the deadline."""
        while time.monotonic() < deadline:
            try:
                data = self._serial.read(max(1, self._serial.in_waiting))
            except OSError as exc:  # pyserial's SerialException is an OSError too
                raise self._lost(exc) from exc
            for frame in self._decoder.feed(data):
                if frame.seq == seq and frame.type in (RSP_OK, RSP_ERROR):
                    return frame
        return None

    def _lost(self, exc: Exception) -> DeviceError:
        return DeviceError(f"lost the connection to the device on {self.port} ({exc})",
                           "the board reset, was unplugged or the emulator stopped; run again")

    # -- requests -------------------------------------------------------------------------------
    def _inference_timeout(self) -> float:
        """``invoke_timeout`` until an inference has been seen; then a few times the slowest one,
        so a board that stops answering mid-validation is given up on in seconds, not minutes."""
        if self._slowest_inference is None:
            return self.invoke_timeout
        return min(self.invoke_timeout, self.timeout + 4 * self._slowest_inference)

    def _inference_request(self, req: Request, payload: bytes = b"") -> bytes:
        start = time.monotonic()
        reply = self.request(req, payload, timeout=self._inference_timeout())
        took = time.monotonic() - start
        self._slowest_inference = max(took, self._slowest_inference or 0.0)
        return reply

    def ping(self, payload: bytes = b"") -> bytes:
        """Echo ``payload`` (up to max_payload bytes) - a round trip without inference."""
        return self.request(Request.PING, payload)

    def hello(self, expected_hash: bytes | None = None) -> DeviceInfo:
        """Handshake. With ``expected_hash``, refuse firmware built from another model."""
        info = parse_hello(self.request(Request.HELLO))
        if info.protocol_version != PROTOCOL_VERSION:
            raise DeviceError(f"the device speaks protocol v{info.protocol_version}, tinydeploy v{PROTOCOL_VERSION}",
                              "rebuild and reflash the firmware with this tinydeploy")
        if expected_hash is not None and info.model_hash != expected_hash:
            raise DeviceError(
                f"the device runs another model (hash {info.model_hash.hex()[:12]}, expected {expected_hash.hex()[:12]})",
                "flash the firmware built from this model first",
            )
        self.info = info
        self._decoder.max_payload = info.max_payload
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

    def run(self, inputs) -> tuple[list[np.ndarray], Timing]:
        """Set every input, invoke and read every output in as few exchanges as the payload allows.

        The device reports CRC-32s of the inputs it computed on and the outputs it produced; a
        mismatch (a reset mid-run, a stale tensor) is retried once and then reported.
        """
        info = self._require_info()
        raws = [_as_bytes(x) for x in inputs]
        _check_input_sizes(info, raws)
        for attempt in range(2):
            start = time.monotonic()
            report, outputs = self._run_once(info, raws)
            wall = time.monotonic() - start
            if report.input_crc == crc32(b"".join(raws)) and report.output_crc == crc32(b"".join(outputs)):
                arrays = [_as_array(raw, spec) for raw, spec in zip(outputs, info.outputs)]
                return arrays, Timing(report.device_us, report.cycles, wall)
            self.resends += 1
        raise DeviceError("the device computed on inputs other than those sent (did it reset mid-run?)",
                          "check the board's power and reset line, then run again")

    def _run_once(self, info: DeviceInfo, raws: list[bytes]) -> tuple[_InvokeReport, list[bytes]]:
        step = info.max_payload - 5
        pieces = [(i, at, raw[at : at + step]) for i, raw in enumerate(raws) for at in range(0, len(raw), step)]
        last = pieces.pop() if pieces else (0, 0, b"")
        for index, at, chunk in pieces:
            self.request(Request.SET_INPUT, struct.pack("<BI", index, at) + chunk)
        reply = self._inference_request(Request.RUN, struct.pack("<BI", last[0], last[1]) + last[2])
        report = _parse_report(reply)
        head = reply[_REPORT.size :]
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


def _name(enum: type[IntEnum], value: int) -> str:
    return enum(value).name if value in enum._value2member_map_ else f"code {value}"


def _application_error(req: int, code: int, detail: int) -> DeviceError:
    name, req_name = _name(ErrorCode, code), _name(Request, req)
    if code == ErrorCode.RUNTIME:
        return DeviceError(f"the model runtime on the device failed ({req_name}: returned {detail})",
                           "the arena may be too small for this model; rebuild with a larger arena")
    return DeviceError(f"the device refused {req_name}: {name} (detail {detail})",
                       "host and firmware disagree about the model; rebuild and reflash")


def _parse_report(payload: bytes) -> _InvokeReport:
    if len(payload) < _REPORT.size:
        raise DeviceError("the device's invoke report is too short", "rebuild and reflash the firmware")
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
