"""``Connection``: framing, codec and state machine for one end of a conversation.

Sans-IO (h11's shape): ``receive_data(bytes)`` appends (``b""`` is end of stream),
``next_event()`` returns the next message, ``NEED_DATA`` or ``CLOSED``, and ``send(message)``
returns the bytes to write and advances our own state. Nothing here does I/O.

Contract of ``next_event``: it raises nothing but ``RemoteProtocolError``; after one, the
connection is dead for receiving (the only thing left to send is a fatal ``Error`` with
``id=None`` naming the problem). Memory held is bounded by ``max_frame_size`` plus the largest
chunk the I/O layer feeds at once, and by ``max_pending_requests`` ids.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from mochi_pybridge.protocol.codec import decode_body, encode_body, to_wire_value
from mochi_pybridge.protocol.errors import LocalProtocolError, RemoteProtocolError, show
from mochi_pybridge.protocol.framing import FrameDecoder, encode_frame
from mochi_pybridge.protocol.limits import DEFAULT_LIMITS, PROTOCOL_VERSION, Limits
from mochi_pybridge.protocol.messages import (
    Cancel,
    Error,
    Hello,
    Message,
    Request,
    Role,
    build_message,
    message_type_of,
)
from mochi_pybridge.protocol.state import Side, State, event_kind, next_state, side_of


class Sentinel(enum.Enum):
    NEED_DATA = "need-data"  # feed more bytes, then call next_event again
    CLOSED = "closed"  # the peer said goodbye (or sent a fatal error) and the stream ended


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRejected:
    """A request whose id was valid but whose method or fields were not.

    The id is now pending: the application must ``send(event.reply)``. Only a responder sees
    this; the connection stays usable.
    """

    id: int
    reply: Error


Event = Message | RequestRejected | Sentinel


class Connection:
    def __init__(
        self,
        *,
        role: Role,
        peer_role: Role,
        software: str,
        limits: Limits = DEFAULT_LIMITS,
        methods: frozenset[str] | None = None,
    ) -> None:
        """``methods``: for a responder, the request methods it serves (None: any)."""
        self.role = role
        self.peer_role = peer_role
        self.software = software
        self.limits = limits
        self.methods = methods
        self.our_side = side_of(role, peer_role)
        self.their_side = side_of(peer_role, role)
        self.our_state = State.AWAIT_HELLO
        self.their_state = State.AWAIT_HELLO
        self.peer_hello: Hello | None = None
        self._decoder = FrameDecoder(limits.max_frame_size)
        # Requests sent (requester) or received (responder) and not yet answered.
        self._pending: set[int] = set()
        self._last_id = 0

    # -- sending ---------------------------------------------------------------------------

    @property
    def pending_requests(self) -> frozenset[int]:
        return frozenset(self._pending)

    def hello(self) -> bytes:
        """Our handshake: always the first thing we send."""
        return self.send(Hello(role=self.role, software=self.software))

    def send(self, message: Message) -> bytes:
        """Serialise ``message`` and advance our state; LocalProtocolError if it is forbidden."""
        kind = event_kind(message)
        if self.their_state is State.ERROR and kind != "fatal":
            raise LocalProtocolError("the peer broke the protocol; only a fatal error may follow")
        new_state = next_state(self.our_side, self.our_state, kind)
        if new_state is None:
            raise LocalProtocolError(
                f"cannot send {kind} as {self.our_side.value} in state {self.our_state.value}"
            )
        self._check_outgoing(message)
        wire = to_wire_value(message.to_wire(), self.limits)
        assert isinstance(wire, dict)
        data = encode_frame(encode_body(wire), self.limits.max_frame_size)
        self._apply_outgoing(message)
        self.our_state = new_state
        return data

    def fatal_error(self, exc: RemoteProtocolError) -> Error:
        """The connection-level error to send as last words after ``exc``; always sendable."""
        return Error(id=None, code=exc.code, message=self._clip(str(exc.args[0])))

    def _clip(self, text: str) -> str:
        # Character count bounds the UTF-8 size at four bytes a character.
        return text[: max(0, self.limits.max_str_len // 4)]

    def send_failed(self) -> None:
        """The I/O layer could not write a frame whole: our side of the stream is unusable."""
        self.our_state = State.ERROR

    def _check_outgoing(self, message: Message) -> None:
        if isinstance(message, Hello):
            if message.role is not self.role or message.protocol != PROTOCOL_VERSION:
                raise LocalProtocolError("hello must carry our role and protocol version")
        elif isinstance(message, Request):
            if message.id <= self._last_id:
                raise LocalProtocolError(f"request id {message.id} is not above {self._last_id}")
            if len(self._pending) >= self.limits.max_pending_requests:
                raise LocalProtocolError("too many requests pending")
        elif isinstance(message, Cancel) or (
            self.our_side is Side.RESPONDER and getattr(message, "id", None) is not None
        ):
            msg_id = getattr(message, "id", None)
            if msg_id not in self._pending:
                raise LocalProtocolError(f"request {msg_id} is not pending")

    def _apply_outgoing(self, message: Message) -> None:
        if isinstance(message, Request):
            self._last_id = message.id
            self._pending.add(message.id)
        elif self.our_side is Side.RESPONDER and message.TYPE in ("result", "error"):
            self._pending.discard(message.id)  # type: ignore[attr-defined]

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the peer; ``b""`` means the stream ended."""
        self._decoder.feed(data)

    def next_event(self) -> Event:
        if self.their_state is State.ERROR:
            raise RemoteProtocolError("the connection already failed")
        try:
            while True:
                event = self._next_event_once()
                if event is not None:
                    return event
        except RemoteProtocolError:
            self.their_state = State.ERROR
            raise
        except LocalProtocolError as exc:
            self.their_state = State.ERROR
            raise RemoteProtocolError(str(exc.args[0]), code=exc.code) from None

    def _next_event_once(self) -> Event | None:
        """One frame's worth of work; None when a frame was consumed silently."""
        body = self._decoder.next_frame()
        if body is None:
            if not self._decoder.eof:
                return NEED_DATA
            if self.their_state is State.CLOSED:
                return CLOSED
            raise RemoteProtocolError(
                f"the {self.peer_role.value} ended the stream without goodbye"
                + (f" ({len(self._pending)} request(s) unanswered)" if self._pending else "")
            )
        if self.their_state is State.CLOSED:
            raise RemoteProtocolError("message after goodbye")
        obj = decode_body(body, self.limits)
        cls = message_type_of(obj)
        assert isinstance(obj, dict)
        wire = {k: v for k, v in obj.items() if k != "type"}
        if cls is Hello:
            self._check_version(wire)
        if cls is Request and self.their_side is Side.REQUESTER:
            return self._receive_request(wire)
        message = build_message(cls, wire)
        return self._accept(message)

    def _check_version(self, wire: dict[str, object]) -> None:
        version = wire.get("protocol")
        if version != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"the {self.peer_role.value} speaks protocol version {show(version)}; "
                f"this side speaks {PROTOCOL_VERSION}",
                code="version-mismatch",
            )

    def _transition(self, kind: str) -> None:
        new_state = next_state(self.their_side, self.their_state, kind)
        if new_state is None:
            raise RemoteProtocolError(
                f"{kind} is not allowed from a {self.their_side.value} "
                f"in state {self.their_state.value}"
            )
        self.their_state = new_state

    def _receive_request(self, wire: dict[str, object]) -> Event:
        self._transition("request")
        request_id = wire.get("id")
        if type(request_id) is not int or not self._last_id < request_id <= 2**32 - 1:
            raise RemoteProtocolError(f"request id {show(request_id)} is not above {self._last_id}")
        if len(self._pending) >= self.limits.max_pending_requests:
            raise RemoteProtocolError("too many requests pending")
        self._last_id = request_id
        self._pending.add(request_id)
        try:
            request = build_message(Request, wire)
        except LocalProtocolError as exc:
            return RequestRejected(
                id=request_id,
                reply=Error(
                    id=request_id, code="invalid-request", message=self._clip(str(exc.args[0]))
                ),
            )
        assert isinstance(request, Request)
        if self.methods is not None and request.method not in self.methods:
            return RequestRejected(
                id=request_id,
                reply=Error(
                    id=request_id,
                    code="unknown-method",
                    message=self._clip(f"unknown method {show(request.method)}"),
                    details={"known": sorted(self.methods)},
                ),
            )
        return request

    def _accept(self, message: Message) -> Event | None:
        self._transition(event_kind(message))
        if isinstance(message, Hello):
            if message.role is not self.peer_role:
                raise RemoteProtocolError(
                    f"expected a {self.peer_role.value}, the peer says it is a {message.role.value}"
                )
            self.peer_hello = message
            return message
        if isinstance(message, Cancel):
            if message.id in self._pending:
                return message
            if message.id <= self._last_id:
                return None  # crossed with our answer: nothing left to cancel
            raise RemoteProtocolError(f"cancel for request {message.id}, which was never made")
        msg_id = getattr(message, "id", None)
        if self.their_side is Side.RESPONDER and msg_id is not None:
            if msg_id not in self._pending:
                raise RemoteProtocolError(f"{message.TYPE} for request {msg_id}, not pending")
            if message.TYPE in ("result", "error"):
                self._pending.discard(msg_id)
        return message
