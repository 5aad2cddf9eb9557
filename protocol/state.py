"""The protocol's state machine as data.

Rule 1: everything that decides which message may be sent when lives in these tables.
Rule 2: the tables know sides (requester, responder), not who is kernel, runner or client;
``side_of`` maps a role pair onto a side.

Each direction of a connection has its own state. A message moves the state of the side that
sent it. Per-request bookkeeping (ids, pending answers) is in ``connection.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from mochi_pybridge.protocol.errors import LocalProtocolError
from mochi_pybridge.protocol.messages import Error, Message, Role


class Side(enum.Enum):
    REQUESTER = "requester"  # sends request and cancel
    RESPONDER = "responder"  # sends progress, log, result and error


class State(enum.Enum):
    AWAIT_HELLO = "await-hello"  # nothing sent yet; the first message must be hello
    OPEN = "open"
    CLOSED = "closed"  # goodbye or a fatal error was sent: nothing more comes
    ERROR = "error"  # broke the protocol: the connection is dead


# (our role, peer role) -> our side. Requests flow kernel→runner and client→kernel only.
_SIDES: Final[Mapping[tuple[Role, Role], Side]] = {
    (Role.KERNEL, Role.RUNNER): Side.REQUESTER,
    (Role.RUNNER, Role.KERNEL): Side.RESPONDER,
    (Role.CLIENT, Role.KERNEL): Side.REQUESTER,
    (Role.KERNEL, Role.CLIENT): Side.RESPONDER,
}


def side_of(role: Role, peer_role: Role) -> Side:
    try:
        return _SIDES[(role, peer_role)]
    except KeyError:
        raise LocalProtocolError(
            f"no connection between a {role.value} and a {peer_role.value}"
        ) from None


def event_kind(message: Message) -> str:
    """The table key of a message: its type, except a connection-level error is ``fatal``."""
    if isinstance(message, Error) and message.id is None:
        return "fatal"
    return message.TYPE


TRANSITIONS: Final[Mapping[Side, Mapping[State, Mapping[str, State]]]] = {
    Side.REQUESTER: {
        State.AWAIT_HELLO: {"hello": State.OPEN, "fatal": State.CLOSED},
        State.OPEN: {
            "request": State.OPEN,
            "cancel": State.OPEN,
            "goodbye": State.CLOSED,
            "fatal": State.CLOSED,
        },
    },
    Side.RESPONDER: {
        State.AWAIT_HELLO: {"hello": State.OPEN, "fatal": State.CLOSED},
        State.OPEN: {
            "progress": State.OPEN,
            "log": State.OPEN,
            "result": State.OPEN,
            "error": State.OPEN,
            "goodbye": State.CLOSED,
            "fatal": State.CLOSED,
        },
    },
}


def next_state(side: Side, state: State, kind: str) -> State | None:
    """The state after ``side`` sends a message of ``kind`` in ``state``; None if forbidden."""
    return TRANSITIONS[side].get(state, {}).get(kind)
