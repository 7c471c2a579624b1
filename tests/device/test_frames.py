"""Frame format: the CRC test vector and encode/decode round trips (PROTOCOL.md, "Framing")."""

from __future__ import annotations

import struct
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from tinydeploy.link import FrameDecoder, crc32, encode_frame
from tinydeploy.resources import firmware_dir

from devicekit import HOST_DEVICE_SOURCES, STUB_MODEL

frames = st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))


def test_crc32_check_value():
    # CRC-32/ISO-HDLC check value, also quoted in PROTOCOL.md; td_crc32 is tested against it on target.
    assert crc32(b"123456789") == 0xCBF43926


def test_frame_layout_is_as_documented():
    frame = encode_frame(0x01, 7, b"")
    assert frame[:6] == bytes([0xA5, 0x5A, 0x01, 0x07, 0x00, 0x00])
    assert frame[6:] == struct.pack("<I", crc32(bytes([0x01, 0x07, 0x00, 0x00])))


@given(frames)
def test_round_trip(frame):
    type_, seq, payload = frame
    (decoded,) = FrameDecoder().feed(encode_frame(type_, seq, payload))
    assert (decoded.type, decoded.seq, decoded.payload) == (type_, seq, payload)


@settings(max_examples=200)
@given(st.lists(frames, min_size=1, max_size=5), st.binary(max_size=40), st.integers(1, 64))
def test_frames_survive_garbage_and_any_split(batch, garbage, split):
    # Leading garbage never contains the sync pair here, so every frame must come out, in order,
    # however the stream is cut into reads.
    garbage = garbage.replace(b"\xa5", b"")
    stream = garbage + b"".join(encode_frame(*f) for f in batch)
    decoder, got = FrameDecoder(), []
    for at in range(0, len(stream), split):
        got += decoder.feed(stream[at : at + split])
    assert [(f.type, f.seq, f.payload) for f in got] == batch


@given(frames, st.integers(0, 10_000), st.integers(0, 7))
def test_any_single_bit_flip_is_rejected(frame, position, bit):
    raw = bytearray(encode_frame(*frame))
    raw[position % len(raw)] ^= 1 << bit
    assert FrameDecoder().feed(bytes(raw)) == []


def test_device_crc32_check_value(tmp_path):
    """The device's nibble-table td_crc32 gives the same check value (built on the host)."""
    fw = firmware_dir()
    main = tmp_path / "crc_main.c"
    main.write_text('#include <stdio.h>\n#include "td_link.h"\n'
                    'int main(void) { printf("%08X", (unsigned)td_crc32(0, (const uint8_t *)"123456789", 9)); '
                    'return 0; }\n')
    sources = [str(fw / s) for s in HOST_DEVICE_SOURCES if not s.endswith("main.c")]
    exe = tmp_path / "crc"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{fw}", f"-I{fw / 'protocol'}",
                    str(main), *sources, str(STUB_MODEL), "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout == "CBF43926"
