from __future__ import annotations

import pytest

from mochi_pybridge.protocol import LocalProtocolError, RemoteProtocolError
from mochi_pybridge.protocol.framing import FrameDecoder, encode_frame

from .helpers import chunkings


def test_FrameDecoder_same_frames_whatever_the_chunking() -> None:
    bodies = [b"a", b"bc" * 100, bytes(range(256)), b"z"]
    data = b"".join(encode_frame(b, 1000) for b in bodies)
    for _name, chunks in chunkings(data):
        decoder = FrameDecoder(1000)
        got = []
        for chunk in chunks:
            decoder.feed(chunk)
            while (frame := decoder.next_frame()) is not None:
                got.append(frame)
        assert got == bodies
        assert decoder.buffered == 0


def test_FrameDecoder_partial_frame_waits() -> None:
    decoder = FrameDecoder(100)
    frame = encode_frame(b"hello", 100)
    for i in range(len(frame) - 1):
        decoder.feed(frame[i : i + 1])
        assert decoder.next_frame() is None
    decoder.feed(frame[-1:])
    assert decoder.next_frame() == b"hello"


def test_FrameDecoder_oversized_header_rejected_before_body_arrives() -> None:
    decoder = FrameDecoder(100)
    decoder.feed((101).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="exceeds max_frame_size"):
        decoder.next_frame()


def test_FrameDecoder_huge_declared_length_allocates_nothing() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(b"\xff\xff\xff\xff")
    with pytest.raises(RemoteProtocolError):
        decoder.next_frame()
    assert decoder.buffered == 4


def test_FrameDecoder_zero_length_frame_rejected() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(b"\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError, match="zero-length"):
        decoder.next_frame()


@pytest.mark.parametrize("partial", [b"\x00", b"\x00\x00\x00\x05ab"])
def test_FrameDecoder_eof_inside_frame(partial: bytes) -> None:
    decoder = FrameDecoder(100)
    decoder.feed(partial)
    assert decoder.next_frame() is None
    decoder.feed(b"")
    with pytest.raises(RemoteProtocolError, match="ended inside a frame"):
        decoder.next_frame()


def test_FrameDecoder_clean_eof() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(encode_frame(b"x", 100))
    decoder.feed(b"")
    assert decoder.next_frame() == b"x"
    assert decoder.next_frame() is None
    assert decoder.eof


def test_FrameDecoder_data_after_eof_is_a_local_error() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(b"")
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"x")


def test_encode_frame_limits() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(b"", 10)
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * 11, 10)
    assert encode_frame(b"x" * 10, 10) == b"\x00\x00\x00\x0a" + b"x" * 10


def test_FrameDecoder_bytewise_feeding_is_linear() -> None:
    # Many small frames fed byte by byte: the buffer is compacted, never grows with history.
    decoder = FrameDecoder(100)
    frame = encode_frame(b"abc", 100)
    peak = 0
    for _ in range(2000):
        for i in range(len(frame)):
            decoder.feed(frame[i : i + 1])
            peak = max(peak, len(decoder._buffer))
        assert decoder.next_frame() == b"abc"
    assert peak <= 2 * len(frame)
