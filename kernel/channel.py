"""The kernel's end of a protocol connection over a trio stream (a runner's socket, or the
embedding client's stdin/stdout). A thin shell around the sans-IO ``Connection``."""

from __future__ import annotations

import contextlib

import trio

from mochi_pybridge.protocol import (
    NEED_DATA,
    Connection,
    Event,
    Message,
    RemoteProtocolError,
)

_READ_SIZE = 65_536
SEND_TIMEOUT = 30.0


class TrioChannel:
    def __init__(
        self,
        send_stream: trio.abc.SendStream,
        receive_stream: trio.abc.ReceiveStream,
        conn: Connection,
    ) -> None:
        self.send_stream = send_stream
        self.receive_stream = receive_stream
        self.conn = conn
        self._send_lock = trio.Lock()

    async def send(self, message: Message) -> None:
        """Write one whole frame. The write is shielded from cancellation (a frame cut in half
        would poison the stream for good), but bounded in time: a peer that stops reading
        for SEND_TIMEOUT seconds gets its connection marked failed."""
        async with self._send_lock:
            data = self.conn.send(message)
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + SEND_TIMEOUT
                try:
                    await self.send_stream.send_all(data)
                except BaseException:
                    self.conn.send_failed()
                    raise
            if scope.cancelled_caught:
                self.conn.send_failed()
                raise trio.BrokenResourceError("the peer stopped reading")

    async def receive(self) -> Event:
        """The next event; at end of stream the connection decides (CLOSED or an error)."""
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event
            try:
                data = await self.receive_stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.conn.receive_data(bytes(data))

    async def send_fatal(self, exc: RemoteProtocolError) -> None:
        """Best effort last words after the peer broke the protocol."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.send(self.conn.fatal_error(exc))
