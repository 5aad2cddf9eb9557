"""The fuzz target shared by the atheris harness and the hypothesis fallback.

Invariant (h11's): whatever bytes a peer sends, in whatever chunks, ``Connection.next_event``
raises nothing but ``RemoteProtocolError``, the fatal error we answer with is always sendable,
and memory stays bounded.
"""

from __future__ import annotations

from mochi_pybridge.protocol import (
    NEED_DATA,
    Connection,
    Limits,
    RemoteProtocolError,
    RequestRejected,
    Role,
)

# Small limits so the fuzzer reaches every limit check with short inputs.
LIMITS = Limits(
    max_frame_size=512,
    max_depth=4,
    max_str_len=64,
    max_bin_len=64,
    max_array_len=8,
    max_map_len=8,
    max_pending_requests=3,
)
PAIRS = [(Role.KERNEL, Role.RUNNER), (Role.RUNNER, Role.KERNEL), (Role.KERNEL, Role.CLIENT)]


def run(role: Role, peer: Role, chunks: list[bytes]) -> None:
    conn = Connection(
        role=role, peer_role=peer, software="fuzz", limits=LIMITS, methods=frozenset({"fetch"})
    )
    conn.hello()
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, RequestRejected):
                    conn.send(event.reply)
        conn.receive_data(b"")
        conn.next_event()
    except RemoteProtocolError as exc:
        # The last words to the peer must always be sendable.
        conn.send(conn.fatal_error(exc))


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    role, peer = PAIRS[data[0] % len(PAIRS)]
    step = data[1] or 1
    body = data[2:]
    run(role, peer, [body])
    run(role, peer, [body[i : i + step] for i in range(0, len(body), step)])
