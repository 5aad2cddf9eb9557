"""Helpers for protocol tests: a connected pair and the three ways of feeding bytes."""

from __future__ import annotations

import random
from collections.abc import Iterator

from mochi_pybridge.protocol import NEED_DATA, Connection, Event, Message, Role


def pair(
    requester: Role = Role.KERNEL, responder: Role = Role.RUNNER, **kwargs: object
) -> tuple[Connection, Connection]:
    """A requester/responder pair that has completed the handshake."""
    req = Connection(role=requester, peer_role=responder, software="test-req")
    resp = Connection(role=responder, peer_role=requester, software="test-resp", **kwargs)  # type: ignore[arg-type]
    resp.receive_data(req.hello())
    req.receive_data(resp.hello())
    assert resp.next_event().TYPE == "hello"  # type: ignore[union-attr]
    assert req.next_event().TYPE == "hello"  # type: ignore[union-attr]
    return req, resp


def chunkings(data: bytes, seed: int = 0) -> Iterator[tuple[str, list[bytes]]]:
    """Whole, one byte at a time, and random chunk sizes."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(data):
        n = rng.randint(1, 17)
        chunks.append(data[i : i + n])
        i += n
    yield "random", chunks


def drain(conn: Connection, chunks: list[bytes]) -> list[Event]:
    """Feed chunks one by one, collecting every event until NEED_DATA after the last."""
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def transfer(sender: Connection, receiver: Connection, message: Message) -> Event:
    receiver.receive_data(sender.send(message))
    event = receiver.next_event()
    assert receiver.next_event() is NEED_DATA
    return event
