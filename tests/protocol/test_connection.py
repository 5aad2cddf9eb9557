from __future__ import annotations

import msgpack
import pytest

from mochi_pybridge.protocol import (
    CLOSED,
    NEED_DATA,
    Cancel,
    Connection,
    Error,
    Goodbye,
    Hello,
    Limits,
    LocalProtocolError,
    Log,
    LogLevel,
    Progress,
    RemoteProtocolError,
    Request,
    RequestRejected,
    Result,
    Role,
    State,
)
from mochi_pybridge.protocol.framing import encode_frame

from .helpers import chunkings, drain, pair, transfer


def frame(obj: object) -> bytes:
    return encode_frame(msgpack.packb(obj, use_bin_type=True), 1 << 20)


def fresh(role: Role = Role.RUNNER, peer: Role = Role.KERNEL, **kw: object) -> Connection:
    return Connection(role=role, peer_role=peer, software="t", **kw)  # type: ignore[arg-type]


# -- handshake ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requester", "responder"), [(Role.KERNEL, Role.RUNNER), (Role.CLIENT, Role.KERNEL)]
)
def test_Connection_handshake_both_role_pairs(requester: Role, responder: Role) -> None:
    req, resp = pair(requester, responder)
    assert req.our_state is State.OPEN
    assert req.their_state is State.OPEN
    assert resp.peer_hello == Hello(role=requester, software="test-req")
    assert req.peer_hello == Hello(role=responder, software="test-resp")


def test_Connection_invalid_role_pair_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(role=Role.RUNNER, peer_role=Role.CLIENT, software="x")


def test_Connection_version_mismatch_is_clear_on_both_sides() -> None:
    kernel = fresh(Role.KERNEL, Role.RUNNER)
    runner = fresh()
    runner.receive_data(kernel.hello())
    assert isinstance(runner.next_event(), Hello)
    future_hello = frame({"type": "hello", "protocol": 2, "role": "runner", "software": "r 9"})
    kernel.receive_data(future_hello)
    with pytest.raises(RemoteProtocolError, match="version 2; this side speaks 1") as info:
        kernel.next_event()
    assert info.value.code == "version-mismatch"
    # The kernel tells the runner why before closing; the runner sees a fatal error.
    last_words = kernel.fatal_error(info.value)
    assert last_words.code == "version-mismatch"
    runner.receive_data(kernel.send(last_words))
    assert runner.next_event() == last_words
    runner.receive_data(b"")
    assert runner.next_event() is CLOSED


def test_Connection_version_checked_before_schema() -> None:
    # A future hello may have other fields; the version is still what gets reported.
    conn = fresh()
    conn.receive_data(frame({"type": "hello", "protocol": 7, "x": 1}))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.code == "version-mismatch"


def test_Connection_wrong_peer_role_rejected() -> None:
    conn = fresh()
    conn.receive_data(fresh(Role.CLIENT, Role.KERNEL).hello())
    with pytest.raises(RemoteProtocolError, match="expected a kernel"):
        conn.next_event()


def test_Connection_message_before_hello_rejected() -> None:
    conn = fresh()
    conn.receive_data(frame({"type": "request", "id": 1, "method": "x", "params": {}}))
    with pytest.raises(RemoteProtocolError, match="state await-hello"):
        conn.next_event()


def test_Connection_second_hello_rejected() -> None:
    _req, resp = pair()
    resp.receive_data(frame({"type": "hello", "protocol": 1, "role": "kernel", "software": "k"}))
    with pytest.raises(RemoteProtocolError, match="hello is not allowed"):
        resp.next_event()


def test_Connection_cannot_send_before_hello() -> None:
    conn = fresh(Role.KERNEL, Role.RUNNER)
    with pytest.raises(LocalProtocolError, match="state await-hello"):
        conn.send(Request(id=1, method="x"))


def test_Connection_hello_must_be_ours() -> None:
    conn = fresh()
    with pytest.raises(LocalProtocolError):
        conn.send(Hello(role=Role.KERNEL, software="x"))
    with pytest.raises(LocalProtocolError):
        conn.send(Hello(protocol=2, role=Role.RUNNER, software="x"))


# -- every message kind round-trips -----------------------------------------------------------


def test_Connection_full_request_lifecycle_every_message_kind() -> None:
    req, resp = pair()
    request = Request(id=1, method="stubgen", params={"pkg": "attrs", "opts": [1, 2]})
    got = transfer(req, resp, request)
    assert got == Request(id=1, method="stubgen", params={"pkg": "attrs", "opts": (1, 2)})
    assert resp.pending_requests == {1}
    for message in (
        Progress(id=1, message="importing", done=1, total=3),
        Progress(id=1, message="unknown total", done=5, total=None),
        Log(id=1, level=LogLevel.WARNING, text="careful"),
        Log(id=None, level=LogLevel.DEBUG, text="connection-level"),
    ):
        assert transfer(resp, req, message) == message
    assert transfer(resp, req, Result(id=1, value={"files": ["a.pyi"]})) == Result(
        id=1, value={"files": ("a.pyi",)}
    )
    assert req.pending_requests == resp.pending_requests == frozenset()
    assert transfer(req, resp, Request(id=2, method="x")) == Request(id=2, method="x")
    assert transfer(req, resp, Cancel(id=2)) == Cancel(id=2)
    failure = Error(id=2, code="cancelled", message="stopped", details={"at": "import"})
    assert transfer(resp, req, failure) == failure
    assert transfer(resp, req, Goodbye(reason="done")) == Goodbye(reason="done")
    assert transfer(req, resp, Goodbye()) == Goodbye()
    for conn in (req, resp):
        conn.receive_data(b"")
        assert conn.next_event() is CLOSED
        assert conn.our_state is conn.their_state is State.CLOSED


@pytest.mark.parametrize("seed", range(3))
def test_Connection_three_chunkings_give_the_same_events(seed: int) -> None:
    req, _resp = pair()
    data = b"".join(
        resp_bytes
        for resp_bytes in (
            req.send(Request(id=1, method="m", params={"k": "v" * 300})),
            req.send(Request(id=2, method="m")),
            req.send(Cancel(id=1)),
            req.send(Goodbye(reason="bye")),
        )
    )
    results = []
    for name, chunks in chunkings(data, seed):
        _, receiver = pair()
        results.append((name, drain(receiver, chunks)))
    assert results[0][1] == results[1][1] == results[2][1]
    assert len(results[0][1]) == 4


# -- illegal transitions, per side ------------------------------------------------------------

REQUESTER_ONLY = [Request(id=1, method="x"), Cancel(id=1)]
RESPONDER_ONLY = [
    Progress(id=1, message="p"),
    Log(id=None, text="l"),
    Result(id=1),
    Error(id=1, code="failed", message="m"),
]


@pytest.mark.parametrize("message", RESPONDER_ONLY, ids=lambda m: m.TYPE)
def test_Connection_requester_cannot_send_responder_messages(message: object) -> None:
    req, _ = pair()
    with pytest.raises(LocalProtocolError, match="as requester"):
        req.send(message)  # type: ignore[arg-type]


@pytest.mark.parametrize("message", REQUESTER_ONLY, ids=lambda m: m.TYPE)
def test_Connection_responder_cannot_send_requester_messages(message: object) -> None:
    _, resp = pair()
    with pytest.raises(LocalProtocolError, match="as responder"):
        resp.send(message)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "progress", "id": 1, "message": "p", "done": 0, "total": None},
        {"type": "log", "id": None, "level": "info", "text": "t"},
        {"type": "result", "id": 1, "value": {}},
        {"type": "error", "id": 1, "code": "failed", "message": "m", "details": {}},
    ],
    ids=lambda w: w["type"],
)
def test_Connection_requester_sending_responder_messages_is_remote_error(
    wire: dict[str, object],
) -> None:
    _, resp = pair()
    resp.receive_data(frame(wire))
    with pytest.raises(RemoteProtocolError, match="not allowed from a requester"):
        resp.next_event()
    assert resp.their_state is State.ERROR


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "request", "id": 1, "method": "x", "params": {}},
        {"type": "cancel", "id": 1},
    ],
    ids=lambda w: w["type"],
)
def test_Connection_responder_sending_requester_messages_is_remote_error(
    wire: dict[str, object],
) -> None:
    req, _ = pair()
    req.receive_data(frame(wire))
    with pytest.raises(RemoteProtocolError, match="not allowed from a responder"):
        req.next_event()


def test_Connection_nothing_after_goodbye() -> None:
    req, resp = pair()
    transfer(req, resp, Goodbye())
    with pytest.raises(LocalProtocolError, match="state closed"):
        req.send(Request(id=1, method="x"))
    resp.receive_data(frame({"type": "cancel", "id": 1}))
    with pytest.raises(RemoteProtocolError, match="after goodbye"):
        resp.next_event()


def test_Connection_fatal_error_closes_the_sender() -> None:
    req, resp = pair()
    transfer(resp, req, Error(id=None, code="internal", message="boom"))
    assert resp.our_state is State.CLOSED
    assert req.their_state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        resp.send(Log(text="more"))


def test_Connection_requester_may_send_fatal_error() -> None:
    req, resp = pair()
    assert transfer(req, resp, Error(id=None, code="internal", message="x")).TYPE == "error"  # type: ignore[union-attr]


# -- request bookkeeping --------------------------------------------------------------------


def test_Connection_request_ids_must_increase() -> None:
    req, resp = pair()
    transfer(req, resp, Request(id=5, method="x"))
    with pytest.raises(LocalProtocolError, match="not above 5"):
        req.send(Request(id=5, method="x"))
    resp.receive_data(frame({"type": "request", "id": 3, "method": "x", "params": {}}))
    with pytest.raises(RemoteProtocolError, match="not above 5"):
        resp.next_event()


def test_Connection_answer_for_unknown_request_is_remote_error() -> None:
    req, _ = pair()
    req.receive_data(frame({"type": "result", "id": 9, "value": {}}))
    with pytest.raises(RemoteProtocolError, match="not pending"):
        req.next_event()


def test_Connection_second_answer_is_remote_error() -> None:
    req, resp = pair()
    transfer(req, resp, Request(id=1, method="x"))
    transfer(resp, req, Result(id=1))
    req.receive_data(frame({"type": "result", "id": 1, "value": {}}))
    with pytest.raises(RemoteProtocolError, match="not pending"):
        req.next_event()


def test_Connection_responder_cannot_answer_twice_or_unknown() -> None:
    req, resp = pair()
    transfer(req, resp, Request(id=1, method="x"))
    resp.send(Result(id=1))
    with pytest.raises(LocalProtocolError, match="not pending"):
        resp.send(Result(id=1))
    with pytest.raises(LocalProtocolError, match="not pending"):
        resp.send(Progress(id=2, message="x"))


def test_Connection_cancel_crossing_an_answer_is_dropped() -> None:
    req, resp = pair()
    transfer(req, resp, Request(id=1, method="x"))
    cancel = req.send(Cancel(id=1))  # in flight while the runner answers
    req.receive_data(resp.send(Result(id=1)))
    assert req.next_event() == Result(id=1)
    resp.receive_data(cancel)
    assert resp.next_event() is NEED_DATA


def test_Connection_cancel_for_request_never_made_is_remote_error() -> None:
    _, resp = pair()
    resp.receive_data(frame({"type": "cancel", "id": 4}))
    with pytest.raises(RemoteProtocolError, match="never made"):
        resp.next_event()


def test_Connection_cannot_cancel_what_is_not_pending() -> None:
    req, _ = pair()
    with pytest.raises(LocalProtocolError, match="not pending"):
        req.send(Cancel(id=1))


def test_Connection_pending_limit_both_sides() -> None:
    limits = Limits(max_pending_requests=2)
    req = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="k", limits=limits)
    resp = Connection(role=Role.RUNNER, peer_role=Role.KERNEL, software="r", limits=limits)
    resp.receive_data(req.hello())
    req.receive_data(resp.hello())
    resp.next_event(), req.next_event()
    transfer(req, resp, Request(id=1, method="x"))
    transfer(req, resp, Request(id=2, method="x"))
    with pytest.raises(LocalProtocolError, match="too many"):
        req.send(Request(id=3, method="x"))
    resp.receive_data(frame({"type": "request", "id": 3, "method": "x", "params": {}}))
    with pytest.raises(RemoteProtocolError, match="too many"):
        resp.next_event()


# -- rejected requests are answered, not fatal -----------------------------------------------


def test_Connection_unknown_method_becomes_a_rejection_to_answer() -> None:
    req, resp = pair(methods=frozenset({"fetch"}))
    event = transfer(req, resp, Request(id=1, method="rm-rf"))
    assert isinstance(event, RequestRejected)
    assert event.reply.code == "unknown-method"
    assert event.reply.details == {"known": ["fetch"]}
    answer = transfer(resp, req, event.reply)
    assert isinstance(answer, Error)
    assert answer.id == 1
    assert transfer(req, resp, Request(id=2, method="fetch")) == Request(id=2, method="fetch")


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "request", "id": 1, "params": {}},
        {"type": "request", "id": 1, "method": "x"},
        {"type": "request", "id": 1, "method": "x", "params": {}, "extra": 1},
        {"type": "request", "id": 1, "method": "Bad Name", "params": {}},
        {"type": "request", "id": 1, "method": "x", "params": [1]},
    ],
)
def test_Connection_malformed_request_with_valid_id_is_rejected(wire: dict[str, object]) -> None:
    _req, resp = pair()
    resp.receive_data(frame(wire))
    event = resp.next_event()
    assert isinstance(event, RequestRejected)
    assert event.reply.code == "invalid-request"
    assert resp.pending_requests == {1}
    resp.send(event.reply)
    assert resp.pending_requests == frozenset()


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "request", "method": "x", "params": {}},
        {"type": "request", "id": "1", "method": "x", "params": {}},
        {"type": "request", "id": 0, "method": "x", "params": {}},
        {"type": "request", "id": 2**32, "method": "x", "params": {}},
        {"type": "request", "id": True, "method": "x", "params": {}},
    ],
)
def test_Connection_request_without_valid_id_is_fatal(wire: dict[str, object]) -> None:
    _, resp = pair()
    resp.receive_data(frame(wire))
    with pytest.raises(RemoteProtocolError):
        resp.next_event()


@pytest.mark.parametrize(
    "wire",
    [
        [1, 2],
        "hello",
        {"id": 1},
        {"type": "nope"},
        {"type": 5},
        {"type": "progress", "id": 1, "message": "p", "done": 0},
        {"type": "progress", "id": 1, "message": "p", "done": -1, "total": None},
        {"type": "progress", "id": 1, "message": 3, "done": 0, "total": None},
        {"type": "log", "id": 1, "level": "loud", "text": "t"},
        {"type": "result", "id": 1, "value": [1]},
        {"type": "result", "id": 1, "value": {}, "x": 1},
        {"type": "error", "id": 1, "code": "Not A Token", "message": "m", "details": {}},
        {"type": "goodbye"},
    ],
)
def test_Connection_malformed_messages_are_fatal(wire: object) -> None:
    req, resp = pair()
    transfer(req, resp, Request(id=1, method="x"))
    req.receive_data(frame(wire))
    with pytest.raises(RemoteProtocolError):
        req.next_event()
    assert req.their_state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="already failed"):
        req.next_event()


def test_Connection_after_remote_error_only_a_fatal_error_may_be_sent() -> None:
    req, _ = pair()
    req.receive_data(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(RemoteProtocolError):
        req.next_event()
    with pytest.raises(LocalProtocolError):
        req.send(Request(id=1, method="x"))
    req.send(Error(id=None, code="protocol-error", message="bye"))


def test_Connection_hello_with_bad_fields_is_fatal() -> None:
    conn = fresh()
    conn.receive_data(frame({"type": "hello", "protocol": 1, "role": "kernel", "software": 3}))
    with pytest.raises(RemoteProtocolError, match="software"):
        conn.next_event()


# -- end of stream --------------------------------------------------------------------------


def test_Connection_eof_without_goodbye_names_unanswered_requests() -> None:
    req, resp = pair()
    transfer(req, resp, Request(id=1, method="x"))
    req.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=r"without goodbye \(1 request"):
        req.next_event()


def test_Connection_eof_before_hello() -> None:
    conn = fresh()
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="without goodbye"):
        conn.next_event()


def test_Connection_send_failed_poisons_our_side() -> None:
    req, _ = pair()
    req.send_failed()
    assert req.our_state is State.ERROR
    with pytest.raises(LocalProtocolError):
        req.send(Request(id=1, method="x"))


def test_Connection_oversized_outgoing_frame_is_local_error() -> None:
    limits = Limits(max_frame_size=64, max_str_len=1000)
    conn = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="k", limits=limits)
    conn.hello()
    with pytest.raises(LocalProtocolError, match="max_frame_size"):
        conn.send(Request(id=1, method="x", params={"p": "x" * 100}))
    # A failed send does not advance state: the id may be used.
    assert conn.pending_requests == frozenset()


def test_Connection_messages_validate_on_construction() -> None:
    with pytest.raises(LocalProtocolError):
        Request(id=0, method="x")
    with pytest.raises(LocalProtocolError):
        Progress(id=1, message="x", done=-1)
    with pytest.raises(LocalProtocolError):
        Log(text=b"bytes")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Error(id=1, code="", message="m")
    with pytest.raises(LocalProtocolError):
        Goodbye(reason="x" * 5000)


def test_Connection_rejection_of_huge_method_is_sendable() -> None:
    """Fuzz finding: a rejection used to echo the peer's method name past max_str_len."""
    limits = Limits(max_str_len=64)
    _req, resp = pair(limits=limits)
    resp.receive_data(frame({"type": "request", "id": 1, "method": "\x01" * 60, "params": {}}))
    event = resp.next_event()
    assert isinstance(event, RequestRejected)
    resp.send(event.reply)


def test_Connection_fatal_error_is_always_sendable() -> None:
    conn = Connection(
        role=Role.RUNNER, peer_role=Role.KERNEL, software="r", limits=Limits(max_str_len=16)
    )
    conn.hello()
    conn.receive_data(frame({"type": "hello", "protocol": "x" * 500, "role": "kernel"}))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    conn.send(conn.fatal_error(info.value))
