"""A scripted fake device for misbehaving-device tests: Python speaking the serial protocol behind
``socket://127.0.0.1:PORT``. It is a stand-in - real firmware cannot be made to lie, replay or go
silent on demand - so every test using it says "fake" in its name.

By default it behaves like the stub firmware (tests/device/stub_model.c: int8 [1,8] -> [1,4]);
``behave(device, frame)`` decides what is sent for each request frame (bytes, or None for
nothing), and the helpers build the honest answer to start from.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np

from tinydeploy.link import (RSP_ERROR, RSP_OK, FrameDecoder, Request, crc32, encode_frame)

from devicekit import STUB_HASH, stub_reference

INPUT_BYTES, OUTPUT_BYTES = 8, 4


def tensor_spec(dtype: int = 1, shape=(1, 8), nbytes: int | None = None, scale: float = 0.5,
                zero_point: int = -3, rank: int | None = None) -> bytes:
    rank = len(shape) if rank is None else rank
    nbytes = int(np.prod(shape)) if nbytes is None else nbytes
    return struct.pack("<BBIfi", dtype, rank, nbytes, scale, zero_point) + struct.pack(f"<{len(shape)}i", *shape)


def hello_payload(*, version: int = 1, max_payload: int = 1024, init_status: int = 0,
                  runtime: bytes = b"stub", clock_hz: int = 64_000_000, arena: int = 12,
                  model_hash: bytes = STUB_HASH, inputs=None, outputs=None, extra: bytes = b"") -> bytes:
    inputs = [tensor_spec()] if inputs is None else inputs
    outputs = [tensor_spec(shape=(1, 4), scale=0.25, zero_point=7)] if outputs is None else outputs
    fixed = struct.pack("<BBBBHhII32s", version, len(inputs), len(outputs), len(runtime), max_payload,
                        init_status, clock_hz, arena, model_hash)
    return fixed + runtime + b"".join(inputs) + b"".join(outputs) + extra


class FakeDevice:
    """One fake board on a TCP port; ``url`` is what DeviceLink opens."""

    def __init__(self, behave=None, hello: bytes | None = None, bytes_per_s: float | None = None,
                 rx_bytes_per_s: float | None = None, input_bytes: int = INPUT_BYTES):
        self.behave = behave or (lambda dev, frame: dev.honest(frame))
        if hello is None:
            hello = hello_payload(inputs=[tensor_spec(shape=(1, input_bytes))])
        self.hello = hello
        self.bytes_per_s = bytes_per_s  # a slow line: answers trickle out at this rate
        self.rx_bytes_per_s = rx_bytes_per_s  # ... and requests are taken in at this rate
        self.input = bytearray(input_bytes)
        self.output = bytes(OUTPUT_BYTES)
        self.requests: list = []  # every frame received, in order
        self.sent: list[bytes] = []  # every answer sent (for replaying)
        self._stop = threading.Event()
        self._conn = None
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    # -- honest behaviour ---------------------------------------------------------------------------
    def ok(self, frame, payload: bytes = b"") -> bytes:
        return encode_frame(RSP_OK, frame.seq, payload)

    def error(self, frame, code: int, detail: int = 0) -> bytes:
        return encode_frame(RSP_ERROR, frame.seq, struct.pack("<BBh", code, frame.type, detail))

    def report(self) -> bytes:
        return struct.pack("<IIII", 120, 0, crc32(bytes(self.input)), crc32(self.output))

    def invoke(self) -> None:
        x = np.frombuffer(bytes(self.input), np.int8)
        self.output = stub_reference(x).tobytes()

    def honest(self, frame) -> bytes:
        if frame.type == Request.HELLO:
            return self.ok(frame, self.hello)
        if frame.type == Request.PING:
            return self.ok(frame, frame.payload)
        if frame.type in (Request.SET_INPUT, Request.RUN):
            _, at = struct.unpack_from("<BI", frame.payload)
            data = frame.payload[5:]
            self.input[at : at + len(data)] = data
            if frame.type == Request.SET_INPUT:
                return self.ok(frame)
            self.invoke()
            return self.ok(frame, self.report() + self.output)
        if frame.type == Request.INVOKE:
            self.invoke()
            return self.ok(frame, self.report())
        if frame.type == Request.GET_OUTPUT:
            _, at, n = struct.unpack_from("<BIH", frame.payload)
            return self.ok(frame, self.output[at : at + n])
        return self.error(frame, 4)

    # -- the line -------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if not data or self._conn is None:
            return
        self.sent.append(data)
        if not self.bytes_per_s:
            self._conn.sendall(data)
            return
        for at in range(0, len(data), 16):
            self._conn.sendall(data[at : at + 16])
            time.sleep(16 / self.bytes_per_s)

    def flood(self, seconds: float, seed: int = 1) -> None:
        """Send random bytes as fast as the socket takes them (in the background)."""
        rng = np.random.default_rng(seed)

        def run():
            end = time.monotonic() + seconds
            while time.monotonic() < end and not self._stop.is_set():
                try:
                    self._conn.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
                except OSError:
                    return

        threading.Thread(target=run, daemon=True).start()

    def _serve(self) -> None:
        try:
            self._conn, _ = self._server.accept()
        except OSError:
            return
        decoder = FrameDecoder(max_payload=65535)
        try:
            while not self._stop.is_set() and (data := self._conn.recv(64 if self.rx_bytes_per_s else 4096)):
                if self.rx_bytes_per_s:
                    time.sleep(len(data) / self.rx_bytes_per_s)
                for frame in decoder.feed(data):
                    self.requests.append(frame)
                    self.send(self.behave(self, frame))
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        for sock in (self._conn, self._server):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
