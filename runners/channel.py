"""The runner's end of the protocol: a blocking loop over the shared sans-IO ``Connection``.

The channel is a dedicated, inherited file descriptor (never stdout/stderr). A runner that runs
package code does so in a child process that does not inherit this descriptor, so neither
printing nor a deliberate ``os.write`` from package code can reach the kernel.
"""

from __future__ import annotations

import os
import select
from collections.abc import Mapping
from typing import Any

from mochi_pybridge import __version__
from mochi_pybridge.protocol import (
    CLOSED,
    NEED_DATA,
    Cancel,
    Connection,
    Error,
    Goodbye,
    Log,
    LogLevel,
    Progress,
    Request,
    RequestRejected,
    Result,
    Role,
)

_READ_SIZE = 65_536


class ChannelClosed(Exception):
    """The kernel said goodbye or closed the channel."""


class RunnerChannel:
    def __init__(self, fd: int, methods: frozenset[str]) -> None:
        self.fd = fd
        self.conn = Connection(
            role=Role.RUNNER,
            peer_role=Role.KERNEL,
            software=f"mochi-pybridge-runner {__version__}",
            methods=methods,
        )
        self.cancelled: set[int] = set()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except BaseException:
            self.conn.send_failed()
            raise

    def _read_event(self, *, block: bool) -> object:
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event
            if not block and not select.select([self.fd], [], [], 0)[0]:
                return NEED_DATA
            self.conn.receive_data(os.read(self.fd, _READ_SIZE))

    def open(self) -> None:
        """Send our hello and wait for the kernel's."""
        self._write(self.conn.hello())
        event = self._read_event(block=True)
        if event is CLOSED:
            raise ChannelClosed("the kernel closed the channel before its hello")

    def next_request(self) -> Request:
        """Block until the next request; answer malformed ones ourselves."""
        while True:
            event = self._read_event(block=True)
            if isinstance(event, Request):
                return event
            if isinstance(event, RequestRejected):
                self._write(self.conn.send(event.reply))
            elif isinstance(event, Cancel):
                self.cancelled.add(event.id)
            elif event is CLOSED or isinstance(event, Goodbye | Error):
                raise ChannelClosed("the kernel ended the conversation")

    def cancel_requested(self, request_id: int) -> bool:
        """Non-blocking: has the kernel asked to cancel ``request_id``?"""
        while (event := self._read_event(block=False)) is not NEED_DATA:
            if isinstance(event, Cancel):
                self.cancelled.add(event.id)
            elif event is CLOSED or isinstance(event, Goodbye | Error):
                raise ChannelClosed("the kernel ended the conversation")
        return request_id in self.cancelled

    def progress(
        self, request_id: int, message: str, done: int = 0, total: int | None = None
    ) -> None:
        self._write(
            self.conn.send(Progress(id=request_id, message=message, done=done, total=total))
        )

    def log(self, request_id: int | None, text: str, level: LogLevel = LogLevel.INFO) -> None:
        self._write(self.conn.send(Log(id=request_id, level=level, text=text)))

    def result(self, request_id: int, value: Mapping[str, Any]) -> None:
        self._write(self.conn.send(Result(id=request_id, value=value)))

    def error(
        self, request_id: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        self._write(
            self.conn.send(Error(id=request_id, code=code, message=message, details=details or {}))
        )

    def goodbye(self, reason: str = "") -> None:
        self._write(self.conn.send(Goodbye(reason=reason)))
