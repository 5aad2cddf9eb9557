"""Coverage-guided fuzzing of protocol/ with atheris (libFuzzer).

Invariant (h11's): whatever bytes a peer sends, in whatever chunks, ``Connection.next_event``
raises nothing but ``RemoteProtocolError`` and memory stays bounded (run with -rss_limit_mb).

    .venv/bin/python fuzz/fuzz_protocol.py fuzz/corpus fuzz/seeds -max_total_time=600 \
        -rss_limit_mb=512 -print_final_stats=1

``fuzz/corpus`` (git-ignored) accumulates inputs; ``fuzz/seeds`` holds the golden frames.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
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
    conn = Connection(role=role, peer_role=peer, software="fuzz", limits=LIMITS,
                      methods=frozenset({"fetch"}))
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


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
