"""The allow-listing egress proxy the kernel runs for stages without a network route (the
fetch and sign stages; prior-art note §6.3).

Such a stage reaches the outside only through a Unix socket bound into its sandbox, behind
which this proxy accepts, for exactly the (scheme, host, port) targets the kernel allowed:
``CONNECT host:port`` for https targets (TLS stays end to end: the proxy sees only the target
name and opaque bytes), and absolute-form ``GET``/``HEAD http://host:port/…`` for http targets
(a plain-http index, e.g. a local one). Everything else is refused with 403 and recorded, so the
kernel can report what was attempted.

Behind a proxy named by the kernel's own environment (``HTTPS_PROXY``/``HTTP_PROXY``, honouring
``NO_PROXY``, as pip and uv do), allowed traffic goes through it; the allow list is applied
first either way.

Invariants: one request per connection (forwarded requests get ``Connection: close``), its head
at most ``MAX_HEAD`` bytes, read within ``HEAD_TIMEOUT``; the target must match the allow list
exactly (hosts compared case-insensitively, ports as numbers, scheme by request kind). The
proxy resolves names itself, so the sandbox needs no resolver.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import tempfile
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import trio

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0
BUFFER = 64 * 1024


Target = tuple[str, str, int]  # scheme, host (lower case), port

_DEFAULT_PORTS = {"https": 443, "http": 80}


def allow_list(urls: Iterable[str]) -> frozenset[Target]:
    """The (scheme, host, port) of each http(s) URL; anything else is a configuration error."""
    allowed = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"a service URL must be https://host[:port]/… (or http), not {url!r}")
        allowed.add(
            (parts.scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS[parts.scheme])
        )
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


_HOP_BY_HOP = (b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive")


@dataclass(frozen=True)
class Forward:
    """A plain-http request to pass on: its target, and its head as sent to the origin
    (origin-form) or to an upstream proxy (absolute-form); both without hop-by-hop headers and
    with ``Connection: close``."""

    target: Target
    origin_head: bytes
    proxy_head: bytes


def parse_forward(head: bytes) -> Forward | None:
    """An absolute-form ``GET``/``HEAD http://…`` head, or None for anything else."""
    line, _, rest = head.partition(b"\r\n")
    try:
        method, url, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if method not in ("GET", "HEAD") or version not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        h for h in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if h and h.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP
    ]  # fmt: skip

    def head_for(request_target: str) -> bytes:
        first = f"{method} {request_target} {version}".encode()
        return b"\r\n".join([first, *headers, b"Connection: close", b"", b""])

    return Forward(("http", parts.hostname.lower(), port), head_for(path), head_for(url))


def upstream_proxy(target: Target) -> tuple[str, int, bytes] | None:
    """The proxy the kernel's own environment names for ``target`` (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``NO_PROXY``, as for pip and uv): (host, port, Proxy-Authorization header
    line or b""), or None to connect directly (always for loopback targets)."""
    if target[1] in ("localhost", "::1") or target[1].startswith("127."):
        return None  # an upstream proxy cannot reach this machine's loopback
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(target[0])
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not url or bypass(target[1], proxies):
        return None
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        return None  # only plain-http proxies are spoken to; others are not used
    auth = b""
    if parts.username:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode())
        auth = b"Proxy-Authorization: Basic " + token + b"\r\n"
    return parts.hostname, parts.port or 80, auth


@dataclass
class ProxyLog:
    """What a stage asked for: connections opened and requests refused."""

    opened: list[Target] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # One lookup per host for the proxy's lifetime: stages open many connections to the same
    # few hosts, and a resolver that drops one of glibc's parallel A/AAAA queries stalls each
    # lookup for the resolv.conf timeout (5 s, measured on these machines).
    _addresses: dict[str, str] = field(default_factory=dict)
    _lookup: trio.Lock = field(default_factory=trio.Lock)

    async def resolve(self, host: str) -> str:
        async with self._lookup:
            if host not in self._addresses:
                infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                if not infos:
                    raise OSError(f"{host} has no address")
                self._addresses[host] = str(infos[0][4][0])
            return self._addresses[host]


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


async def _handle(stream: trio.SocketStream, allowed: frozenset[Target], log: ProxyLog) -> None:
    async with stream:
        head = await _read_head(stream)
        if head is None:
            return
        connect = parse_connect(head)
        forward = None if connect else parse_forward(head)
        target: Target | None = (
            ("https", *connect) if connect else forward.target if forward else None
        )
        if target is None or target not in allowed:
            log.refused.append(head.split(b"\r\n", 1)[0][:200].decode("ascii", "replace"))
            await _answer(stream, b"403 Forbidden")
            return
        via = upstream_proxy(target)
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                host, port = (via[0], via[1]) if via else (target[1], target[2])
                upstream = await trio.open_tcp_stream(await log.resolve(host), port)
                if via and forward is None:
                    await _connect_through(upstream, target, via[2])
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            await _answer(stream, b"502 Bad Gateway")
            return
        log.opened.append(target)
        async with upstream:
            if forward is not None:
                # One request, then the answer until the other side closes (Connection: close).
                if via:
                    request = (
                        forward.proxy_head.replace(
                            b"\r\n", b"\r\n" + via[2].rstrip(b"\r\n") + b"\r\n", 1
                        )
                        if via[2]
                        else forward.proxy_head
                    )
                else:
                    request = forward.origin_head
                await upstream.send_all(request)
                await _splice(upstream, stream)
                return
            await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                await upstream.send_all(rest)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_splice, stream, upstream)
                nursery.start_soon(_splice, upstream, stream)


async def _connect_through(upstream: trio.SocketStream, target: Target, auth: bytes) -> None:
    """Open a tunnel to ``target`` through an upstream proxy; OSError if it says no."""
    authority = f"{target[1]}:{target[2]}".encode()
    await upstream.send_all(
        b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n" + auth + b"\r\n"
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = await upstream.receive_some(MAX_HEAD)
        if not chunk or len(answer) > MAX_HEAD:
            raise OSError("the upstream proxy closed the connection")
        answer += chunk
    first = answer.split(b"\r\n", 1)[0]
    status = first.split(b" ")
    if len(status) < 2 or status[1] != b"200":
        raise OSError(f"the upstream proxy refused: {first[:200]!r}")


async def _answer(stream: trio.SocketStream, status: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, OSError):
        await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")


async def serve(
    path: Path,
    allowed: frozenset[Target],
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


@contextlib.asynccontextmanager
async def proxied(allowed: frozenset[Target], log: ProxyLog) -> AsyncIterator[Path]:
    """Serve ``allowed`` for the duration of the block; yields a directory holding only
    ``proxy.sock``, to bind into the stage. The directory is private and short (Unix socket
    paths are limited to 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="mochi-egress-"))
    try:
        async with _unwrapped(), trio.open_nursery() as nursery:
            await nursery.start(serve, directory / "proxy.sock", allowed, log)
            yield directory
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def _unwrapped() -> AsyncIterator[None]:
    """The proxy's nursery wraps the block's own failure in a group: hand that on alone."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
