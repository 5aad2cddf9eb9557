"""The runner's end of the kernel's egress proxy (``kernel/egress``).

A stage without a network route gets the proxy as a Unix socket bound into its sandbox. Clients
(``requests``, ``urllib``, uv) expect an HTTP proxy at a host and port, so a runner listens on a
loopback port inside its own network namespace and relays each connection to that socket, then
points the usual proxy variables at it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

_BUFFER = 64 * 1024


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(_BUFFER):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _relay_one(client: socket.socket, proxy: str) -> None:
    with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
        try:
            upstream.connect(proxy)
        except OSError:
            return
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()


def start_relay(proxy: str) -> int:
    """Listen on a loopback port of this sandbox; relay each connection to the proxy socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def accept_loop() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_relay_one, args=(client, proxy), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    port: int = listener.getsockname()[1]
    return port


def use_proxy(proxy: str) -> None:
    """Route this process's HTTP(S) clients, and the programs it starts, through ``proxy``."""
    url = f"http://127.0.0.1:{start_relay(proxy)}"
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        os.environ[name] = url
    # requests ships its own CA bundle; a private CA configured for the kernel applies here too.
    if os.environ.get("SSL_CERT_FILE"):
        os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"]
