"""The kernel's allow-listing egress proxy (kernel/egress.py), the only way out of the fetch
and sign sandboxes: strict parsing of what it is asked, and a hostile process in each of those
sandboxes that tries to get past it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from mochi_pybridge.kernel.egress import ProxyLog, allow_list, parse_connect, parse_forward, serve
from mochi_pybridge.sandbox.policy import StageKind

from ..sandbox.canary import all_blocked, import_canary


def test_connect_heads_are_parsed_strictly() -> None:
    assert parse_connect(b"CONNECT fulcio.sigstore.dev:443 HTTP/1.1\r\n\r\n") == (
        "fulcio.sigstore.dev",
        443,
    )
    assert parse_connect(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n") == ("::1", 8443)
    for head in (
        b"GET http://fulcio.sigstore.dev/ HTTP/1.1\r\n\r\n",
        b"CONNECT fulcio.sigstore.dev HTTP/1.1\r\n\r\n",
        b"CONNECT fulcio.sigstore.dev:0 HTTP/1.1\r\n\r\n",
        b"CONNECT fulcio.sigstore.dev:99999 HTTP/1.1\r\n\r\n",
        b"CONNECT user@evil:443 HTTP/1.1\r\n\r\n",
        b"CONNECT a b:443 HTTP/1.1\r\n\r\n",
        b"CONNECT \xff:443 HTTP/1.1\r\n\r\n",
    ):
        assert parse_connect(head) is None, head
    assert allow_list(["https://Rekor.example:8443/api", "http://index.example/simple"]) == {
        ("https", "rekor.example", 8443),
        ("http", "index.example", 80),
    }
    with pytest.raises(ValueError, match="https"):
        allow_list(["ftp://fulcio.example"])
    forward = parse_forward(
        b"GET http://Index.example:8080/simple/a/?x=1 HTTP/1.1\r\nHost: index.example:8080\r\n"
        b"Proxy-Authorization: secret\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n"
    )
    assert forward is not None
    assert forward.target == ("http", "index.example", 8080)
    assert forward.origin_head == (
        b"GET /simple/a/?x=1 HTTP/1.1\r\nHost: index.example:8080\r\nAccept: */*\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert forward.proxy_head.startswith(b"GET http://Index.example:8080/simple/a/?x=1 HTTP/1.1")
    for head in (
        b"POST http://index.example/ HTTP/1.1\r\n\r\n",
        b"GET https://index.example/ HTTP/1.1\r\n\r\n",
        b"GET http://user:pw@index.example/ HTTP/1.1\r\n\r\n",
        b"GET /relative HTTP/1.1\r\n\r\n",
    ):
        assert parse_forward(head) is None, head


async def _echo(listener: trio.SocketListener) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(1024):
                await stream.send_all(data)

    await trio.serve_listeners(handler, [listener])


async def _http_ok(listener: trio.SocketListener) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(1024)):
                head += chunk
            body = head.split(b"\r\n", 1)[0]  # echo the request line the origin saw
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    await trio.serve_listeners(handler, [listener])


@pytest.mark.parametrize("kind", [StageKind.FETCH, StageKind.SIGN])
async def test_a_stage_reaches_only_allowed_targets_through_the_proxy(
    tmp_path: Path, kind: StageKind
) -> None:
    forbidden = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with forbidden:
        forbidden.bind(("127.0.0.1", 0))
        forbidden.listen()
        forbidden.setblocking(False)
        port = forbidden.getsockname()[1]
        (allowed_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        allowed_port = allowed_listener.socket.getsockname()[1]
        (http_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        http_port = http_listener.socket.getsockname()[1]
        proxy_dir = tmp_path / "proxy"
        proxy_dir.mkdir()
        log = ProxyLog()
        body = f"""
        import socket
        def direct():
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"leak")
        def via_proxy(head, payload=b""):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect("/in/proxy/proxy.sock")
            s.sendall(head)
            answer = s.recv(1024)
            if b" 200 " not in answer.split(b"\\r\\n")[0]:
                raise PermissionError(1, answer.decode(errors="replace"))
            s.sendall(payload)
            return s.recv(1024)
        def via_http(head):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect("/in/proxy/proxy.sock")
            s.sendall(head)
            answer = b""
            while chunk := s.recv(1024):
                answer += chunk
            if b" 200 " not in answer.split(b"\\r\\n")[0]:
                raise PermissionError(1, answer.decode(errors="replace"))
            return answer.split(b"\\r\\n\\r\\n", 1)[1]
        attempt("direct-tcp", direct)
        attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
        attempt("connect-forbidden", lambda: via_proxy(b"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n", b"leak"))
        attempt("connect-other-name", lambda: via_proxy(b"CONNECT localhost:{allowed_port} HTTP/1.1\\r\\n\\r\\n"))
        attempt("plain-http-to-https-target", lambda: via_http(b"GET http://127.0.0.1:{allowed_port}/ HTTP/1.1\\r\\n\\r\\n"))
        attempt("connect-to-http-target", lambda: via_proxy(b"CONNECT 127.0.0.1:{http_port} HTTP/1.1\\r\\n\\r\\n"))
        attempt("post", lambda: via_http(b"POST http://127.0.0.1:{http_port}/ HTTP/1.1\\r\\nContent-Length: 0\\r\\n\\r\\n"))
        attempt("http-allowed", lambda: via_http(b"GET http://127.0.0.1:{http_port}/simple/?q=1 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"))
        attempt("connect-allowed", lambda: via_proxy(b"CONNECT 127.0.0.1:{allowed_port} HTTP/1.1\\r\\n\\r\\n", b"ping"))
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_echo, allowed_listener)
            nursery.start_soon(_http_ok, http_listener)
            allowed = frozenset(
                {("https", "127.0.0.1", allowed_port), ("http", "127.0.0.1", http_port)}
            )
            await nursery.start(serve, proxy_dir / "proxy.sock", allowed, log)
            result = await import_canary(tmp_path, body, kind=kind, inputs={"proxy": proxy_dir})
            nursery.cancel_scope.cancel()
        blocked = ["direct-tcp", "dns", "connect-forbidden", "connect-other-name",
                   "plain-http-to-https-target", "connect-to-http-target", "post"]  # fmt: skip
        all_blocked(result.attempts, blocked)
        assert result.attempts["connect-allowed"] == "allowed:b'ping'"
        # The origin saw an origin-form request: the proxy rewrote it.
        assert result.attempts["http-allowed"] == "allowed:b'GET /simple/?q=1 HTTP/1.1'"
        assert sorted(log.opened) == [("http", "127.0.0.1", http_port),
                                      ("https", "127.0.0.1", allowed_port)]  # fmt: skip
        assert len(log.refused) == 5
        with pytest.raises(BlockingIOError):
            forbidden.accept()


async def test_an_upstream_proxy_from_the_environment_carries_allowed_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a corporate proxy (HTTPS_PROXY/HTTP_PROXY, as pip and uv read them), the egress
    proxy still applies its allow list, then goes through that proxy, credentials included."""
    (echo_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    echo_port = echo_listener.socket.getsockname()[1]
    (upstream_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    upstream_port = upstream_listener.socket.getsockname()[1]
    heads: list[bytes] = []

    async def upstream(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(1024)):
                head += chunk
            heads.append(head)
            if not head.startswith(b"CONNECT "):
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nupstream")
                return
            async with await trio.open_tcp_stream("127.0.0.1", echo_port) as tunnel:
                await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                data = await stream.receive_some(1024)
                await tunnel.send_all(data)
                await stream.send_all(await tunnel.receive_some(1024))

    monkeypatch.setenv("HTTPS_PROXY", f"http://user:pa%20ss@127.0.0.1:{upstream_port}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{upstream_port}")
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    allowed = frozenset({("https", "index.invalid", 443), ("http", "index.invalid", 80)})
    log = ProxyLog()

    async def ask(request: bytes, payload: bytes = b"") -> bytes:
        stream = await trio.open_unix_socket(str(tmp_path / "proxy.sock"))
        async with stream:
            await stream.send_all(request)
            answer = await stream.receive_some(1024)
            if payload:
                await stream.send_all(payload)
                answer += b"|" + await stream.receive_some(1024)
            return answer

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_echo, echo_listener)
        nursery.start_soon(trio.serve_listeners, upstream, [upstream_listener])
        await nursery.start(serve, tmp_path / "proxy.sock", allowed, log)
        tunnel = await ask(b"CONNECT index.invalid:443 HTTP/1.1\r\n\r\n", b"ping")
        plain = await ask(
            b"GET http://index.invalid/simple/ HTTP/1.1\r\nHost: index.invalid\r\n\r\n"
        )
        refused = await ask(b"CONNECT other.invalid:443 HTTP/1.1\r\n\r\n")
        nursery.cancel_scope.cancel()
    assert tunnel.endswith(b"|ping")
    assert plain.endswith(b"upstream")
    assert refused.startswith(b"HTTP/1.1 403")
    assert len(heads) == 2  # the refused target never reached the upstream proxy
    assert heads[0].startswith(b"CONNECT index.invalid:443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic dXNlcjpwYSBzcw==\r\n" in heads[0]  # user:pa ss
    assert heads[1].startswith(b"GET http://index.invalid/simple/ HTTP/1.1\r\n")
    assert b"Connection: close" in heads[1]
