"""The battery of misbehaving devices (fakes: see fakedevice.py), shared by
test_misbehaving_devices.py and bench/link_faults.py.

Each scenario starts a FakeDevice and says what the host must conclude: ``expect`` is a regex the
one-line DeviceError must match, or None for a device that is slow or odd but healthy, whose
results must come back right."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinydeploy.link import RSP_OK, Request, crc32, encode_frame

from fakedevice import FakeDevice, hello_payload, tensor_spec


@dataclass(frozen=True)
class Scenario:
    name: str
    start: Callable[[], FakeDevice]
    expect: str | None  # regex of the DeviceError, or None: must succeed
    input_bytes: int = 8
    samples: int = 3


def _after_hello(answer):
    """A behaviour that answers HELLO honestly and everything else with ``answer(dev, frame)``."""
    def behave(dev, frame):
        return dev.honest(frame) if frame.type == Request.HELLO else answer(dev, frame)
    return behave


def _once(answer):
    """``answer`` for the first request after HELLO, silence afterwards."""
    def behave(dev, frame):
        if frame.type == Request.HELLO:
            return dev.honest(frame)
        if getattr(dev, "done", False):
            return None
        dev.done = True
        return answer(dev, frame)
    return behave


def _replay(dev, frame):
    return dev.sent[-1]  # the answer to the previous request, old seq and all


def _oversized(dev, frame):
    return b"\xa5\x5a\x80" + bytes([frame.seq]) + struct.pack("<H", 60_000) + bytes(40)


def _phantom_then_answer(dev, frame):
    # a header whose length (1,000, within max_payload) is a lie, 20 bytes, then the real answer
    return b"\xa5\x5a\x80" + bytes([frame.seq]) + struct.pack("<H", 1000) + bytes(20) + dev.honest(frame)


def _bad_crc(dev, frame):
    answer = bytearray(dev.honest(frame))
    answer[-1] ^= 0x5A
    return bytes(answer)


def _flood(dev, frame):
    dev.flood(seconds=60)
    return None


def _short_error(dev, frame):
    return encode_frame(0x81, frame.seq, b"\x08")  # an ERROR frame without its 4-byte payload


def _reset_before_run(dev, frame):
    if frame.type == Request.RUN:
        dev.input[:] = bytes(len(dev.input))  # powered up again: the chunk just sent is gone
        dev.invoke()
        return dev.ok(frame, dev.report() + dev.output)
    return dev.honest(frame)


def _wrong_output_crc(dev, frame):
    answer = dev.honest(frame)
    if frame.type != Request.RUN:
        return answer
    dev.invoke()
    report = struct.pack("<IIII", 120, 0, crc32(bytes(dev.input)), crc32(dev.output) ^ 1)
    return dev.ok(frame, report + dev.output)


def _extra_output_bytes(dev, frame):
    answer = dev.honest(frame)
    if frame.type != Request.RUN:
        return answer
    return dev.ok(frame, dev.report() + dev.output + b"\x00\x00")


def _slow_inference(dev, frame):
    if frame.type == Request.RUN:
        time.sleep(1.5)  # longer than the link's first inference bound (~1 s for this model)
    return dev.honest(frame)


def _banner_then_honest(dev, frame):
    answer = dev.honest(frame)
    return (b"\r\nBooting tinydeploy...\r\nmbed OS 6.15\r\n" + answer) if frame.type == Request.HELLO else answer


def _first_cut_then_silent(dev, frame):
    if getattr(dev, "done", False):
        return None
    dev.done = True
    return dev.honest(frame)[:30]


def _close(dev, frame):
    dev.close()
    return None


def _fake(behave=None, hello=None, bytes_per_s=None, **options):
    return lambda: FakeDevice(behave, hello, bytes_per_s, **options)


SCENARIOS = [
    # -- dead, lying or babbling devices: one clear DeviceError within seconds
    Scenario("silent after HELLO", _fake(_after_hello(lambda d, f: None)), "stopped answering: nothing received"),
    Scenario("silent mid-frame", _fake(_once(lambda d, f: d.honest(f)[:9])), "stopped in the middle of a frame"),
    Scenario("replayed old replies", _fake(_after_hello(_replay)), "replays old answers"),
    Scenario("oversized length", _fake(_after_hello(_oversized)), "no valid answer .* damaged frames"),
    Scenario("garbage flood", _fake(_after_hello(_flood)), "bytes that are not tinydeploy frames"),
    Scenario("wrong CRC on every answer", _fake(_after_hello(_bad_crc)), "no valid answer .* damaged frames"),
    Scenario("error frames without payload", _fake(_after_hello(_short_error)), "no valid answer .* RUN after 5"),
    Scenario("connection closed mid-run", _fake(_after_hello(_close)), "lost the connection"),
    Scenario("every request reported damaged", _fake(_after_hello(lambda d, f: d.error(f, 1))),
             "no valid answer .* RUN after 5 attempts .*5 reports of damaged requests"),
    Scenario("handshake cut off mid-frame, then silence", _fake(_first_cut_then_silent), "stopped in the middle of a frame"),
    Scenario("every answer cut short", _fake(lambda d, f: d.honest(f)[:30]), "no valid answer .* HELLO .*damaged frames"),
    Scenario("HELLO refused", _fake(lambda d, f: d.error(f, 4)), "refused HELLO: UNKNOWN_TYPE"),
    Scenario("truncated handshake", _fake(hello=hello_payload()[:30]), r"handshake is malformed: 30 bytes"),
    Scenario("handshake cut inside a spec", _fake(hello=hello_payload()[:-3]), "ends inside the shape of output 0"),
    Scenario("max_payload 0", _fake(hello=hello_payload(max_payload=0)), "max_payload is 0 bytes"),
    Scenario("max_payload 4", _fake(hello=hello_payload(max_payload=4)), "max_payload is 4 bytes"),
    Scenario("rank 200", _fake(hello=hello_payload(inputs=[tensor_spec(rank=200)])), "input 0 has rank 200"),
    Scenario("rank 200 with all its dimensions", _fake(hello=hello_payload(inputs=[tensor_spec(shape=(1,) * 199 + (8,))])),
             "input 0 has rank 200"),
    Scenario("unknown dtype", _fake(hello=hello_payload(inputs=[tensor_spec(dtype=9)])), "dtype code 9"),
    Scenario("size that is not the shape's", _fake(hello=hello_payload(inputs=[tensor_spec(nbytes=9)])),
             r"input 0 is 9 bytes, but its shape \(1, 8\) of int8 is 8"),
    Scenario("bytes after the specs", _fake(hello=hello_payload(extra=b"\x01\x02")), "2 bytes after the last tensor spec"),
    Scenario("other protocol version", _fake(hello=hello_payload(version=2)), "speaks protocol v2"),
    Scenario("no inputs", _fake(hello=hello_payload(inputs=[])), "0 inputs"),
    Scenario("TFLM arena too small", _fake(hello=hello_payload(runtime=b"tflm", init_status=-4, inputs=[
        tensor_spec(nbytes=0)], outputs=[tensor_spec(shape=(1, 4), nbytes=0)])),
        r"could not allocate its tensor arena .*larger arena"),
    Scenario("TFLM schema mismatch", _fake(hello=hello_payload(runtime=b"tflm", init_status=-2)), "schema version"),
    Scenario("native init failed", _fake(hello=hello_payload(runtime=b"native", init_status=-7)),
             r"native runtime's td_model_init\(\) returned -7"),
    Scenario("device reset mid-run", _fake(_reset_before_run), r"inputs other than those sent \(input CRC"),
    Scenario("wrong output CRC", _fake(_wrong_output_crc), r"do not match the CRC .*\(output CRC"),
    Scenario("RUN answer with extra bytes", _fake(_extra_output_bytes), "RUN answer carries 6 output bytes, 4 expected"),
    # -- slow or odd but healthy: the results must come back right
    Scenario("slow but healthy line (2 KB/s)", _fake(bytes_per_s=2_000), None),
    # a host link slower than the old fixed 2 s per exchange allowed: 1 KB SET_INPUT frames take
    # 2.3 s to reach the device (QEMU's UART on a loaded host); answers to earlier attempts count
    Scenario("slow line to the device (450 B/s), a 2 KB sample", _fake(rx_bytes_per_s=450, input_bytes=2048),
             None, input_bytes=2048, samples=1),
    Scenario("inference slower than the first bound", _fake(_slow_inference), None),
    Scenario("phantom length, then the answer", _fake(_after_hello(_phantom_then_answer)), None),
    Scenario("boot banner before the handshake", _fake(_banner_then_honest), None),
    Scenario("every answer sent twice", _fake(lambda d, f: d.honest(f) * 2), None, samples=6),
]


def exercise(url: str, samples: int = 3, input_bytes: int = 8, **link_options):
    """What validate does with a device: handshake (model hash checked), then ``samples`` runs of
    the stub model. Returns the outputs; raises whatever the link raises."""
    from devicekit import STUB_HASH, stub_reference
    from tinydeploy.link import DeviceLink, inference_bound_s

    options = {"invoke_timeout": inference_bound_s(16, 64_000_000, emulated=False)} | link_options
    rng = np.random.default_rng(0)
    with DeviceLink(url, **options) as link:
        link.hello(expected_hash=STUB_HASH)
        for _ in range(samples):
            x = rng.integers(-128, 128, size=(1, input_bytes), dtype=np.int8)
            (y,), _ = link.run([x])
            np.testing.assert_array_equal(y, stub_reference(x))  # never a wrong success
    return link
