"""Length-prefixed frames: a 4-byte big-endian unsigned length, then that many body bytes.

The declared length is checked against ``max_frame_size`` as soon as the 4 header bytes are
here, before any of the body is buffered. The buffer is a ``bytearray`` consumed from the
front with an offset and compacted lazily, so feeding one byte at a time stays linear.
"""

from __future__ import annotations

import struct
from typing import Final

from mochi_pybridge.protocol.errors import LocalProtocolError, RemoteProtocolError
from mochi_pybridge.protocol.limits import FRAME_HEADER_SIZE

_HEADER: Final = struct.Struct(">I")


def encode_frame(body: bytes, max_frame_size: int) -> bytes:
    if not body:
        raise LocalProtocolError("empty frame body")
    if len(body) > max_frame_size:
        raise LocalProtocolError(
            f"frame of {len(body)} bytes exceeds max_frame_size {max_frame_size}"
        )
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Splits a byte stream into frame bodies. ``feed(b"")`` marks end of stream."""

    __slots__ = ("_buffer", "_eof", "_max_frame_size", "_start")

    def __init__(self, max_frame_size: int) -> None:
        self._buffer = bytearray()
        self._start = 0
        self._eof = False
        self._max_frame_size = max_frame_size

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        if self._eof:
            if data:
                raise LocalProtocolError("data fed after end of stream")
            return
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete body, or ``None`` if more bytes are needed.

        At end of stream with a partial frame buffered, raises ``RemoteProtocolError``.
        """
        available = len(self._buffer) - self._start
        if available >= FRAME_HEADER_SIZE:
            (length,) = _HEADER.unpack_from(self._buffer, self._start)
            if length == 0:
                raise RemoteProtocolError("zero-length frame")
            if length > self._max_frame_size:
                raise RemoteProtocolError(
                    f"frame of {length} bytes exceeds max_frame_size {self._max_frame_size}"
                )
            end = self._start + FRAME_HEADER_SIZE + length
            if len(self._buffer) >= end:
                body = bytes(self._buffer[self._start + FRAME_HEADER_SIZE : end])
                self._start = end
                self._compact()
                return body
        if self._eof and available:
            raise RemoteProtocolError(f"stream ended inside a frame ({available} bytes left)")
        return None

    def _compact(self) -> None:
        # Drop consumed bytes once they are the larger part: amortised O(1) per byte.
        if self._start and self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0
