"""The allow-listing CONNECT proxy the kernel runs for the sign stage (prior-art note §6.3).

The sign runner has no network namespace route. It reaches the outside only through a Unix
socket bound into its sandbox, behind which this proxy accepts ``CONNECT host:port`` for exactly
the (host, port) pairs named by the Sigstore signing configuration and refuses everything else
with 403 (recorded, so the kernel can report what was attempted). TLS stays end to end between
the runner and the service: the proxy sees only the target name and opaque bytes.

Invariants: one request head per connection, at most ``MAX_HEAD`` bytes, read within
``HEAD_TIMEOUT``; only CONNECT (a plain-HTTP request would let the runner pick any URL path on
an allowed host without TLS, and nothing in signing needs it); the target must match the allow
list exactly (hosts compared case-insensitively, ports as numbers). The proxy resolves names
itself, so the sandbox needs no resolver.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import trio

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0
BUFFER = 64 * 1024


def allow_list(urls: Iterable[str]) -> frozenset[tuple[str, int]]:
    """(host, port) pairs for https URLs; anything else is refused as a configuration error."""
    allowed = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"signing service URL must be https://host[:port]/…, not {url!r}")
        allowed.add((parts.hostname.lower(), parts.port or 443))
    return frozenset(allowed)


def parse_connect(head: bytes) -> tuple[str, int] | None:
    """The target of a ``CONNECT host:port HTTP/1.x`` head, or None when it is anything else."""
    try:
        line = head.split(b"\r\n", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "CONNECT" or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    host, sep, port = parts[1].rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c in host for c in "/@[] \t"):
        return None
    return host.lower(), int(port)


@dataclass
class ProxyLog:
    """What the sign stage asked for: tunnels opened and targets refused."""

    opened: list[tuple[str, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    head = b""
    with trio.move_on_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(MAX_HEAD)
            if not chunk:
                return None
            head += chunk
            if len(head) > MAX_HEAD:
                return None
        return head
    return None


async def _splice(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    try:
        while chunk := await source.receive_some(BUFFER):
            await sink.send_all(chunk)
        if isinstance(sink, trio.SocketStream):
            await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def _handle(
    stream: trio.SocketStream, allowed: frozenset[tuple[str, int]], log: ProxyLog
) -> None:
    async with stream:
        head = await _read_head(stream)
        if head is None:
            return
        target = parse_connect(head)
        if target is None or target not in allowed:
            log.refused.append(head.split(b"\r\n", 1)[0][:200].decode("ascii", "replace"))
            await _answer(stream, b"403 Forbidden")
            return
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                upstream = await trio.open_tcp_stream(*target)
        except (OSError, trio.TooSlowError):
            await _answer(stream, b"502 Bad Gateway")
            return
        log.opened.append(target)
        async with upstream:
            await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                await upstream.send_all(rest)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_splice, stream, upstream)
                nursery.start_soon(_splice, upstream, stream)


async def _answer(stream: trio.SocketStream, status: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, OSError):
        await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")


async def serve(
    path: Path,
    allowed: frozenset[tuple[str, int]],
    log: ProxyLog,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the Unix socket ``path`` until cancelled."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(16)
    listener = trio.SocketListener(sock)

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(stream, allowed, log)

    await trio.serve_listeners(handler, [listener], task_status=task_status)
