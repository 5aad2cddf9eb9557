"""The eight message kinds. Frozen, slotted, keyword-only; the constructor validates.

Do not subclass these. Each has a wire ``TYPE`` tag and ``to_wire()``; ``parse_message`` maps a
decoded body to a message, turning every defect into ``RemoteProtocolError``. Constructing an
invalid message locally raises ``LocalProtocolError`` (it is our bug). The wire layout of each
message (field order included) is documented in PROTOCOL.md and pinned by golden vectors.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Final

from mochi_pybridge.protocol.errors import LocalProtocolError, RemoteProtocolError, show
from mochi_pybridge.protocol.limits import PROTOCOL_VERSION

MAX_REQUEST_ID: Final = 2**32 - 1
_TOKEN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_SOFTWARE_MAX = 256


class Role(enum.Enum):
    """Who is speaking. Requests flow kernel→runner and client→kernel."""

    KERNEL = "kernel"
    RUNNER = "runner"
    CLIENT = "client"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _fail(message: str) -> LocalProtocolError:
    return LocalProtocolError(message)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise _fail(f"{name} must be an integer in [{low}, {high}], not {show(value)}")


def _check_str(name: str, value: object, *, max_len: int | None = None) -> None:
    if type(value) is not str:
        raise _fail(f"{name} must be a string, not {type(value).__name__}")
    if max_len is not None and len(value) > max_len:
        raise _fail(f"{name} longer than {max_len} characters")


def _check_token(name: str, value: object) -> None:
    _check_str(name, value)
    assert isinstance(value, str)
    if not _TOKEN.fullmatch(value):
        raise _fail(f"{name} must match {_TOKEN.pattern}, not {show(value)}")


def _check_map(name: str, value: object) -> None:
    if not isinstance(value, Mapping) or any(type(k) is not str for k in value):
        raise _fail(f"{name} must be a map with string keys")


def _check_id(value: object) -> None:
    _check_int("id", value, 1, MAX_REQUEST_ID)


def _check_optional_id(value: object) -> None:
    if value is not None:
        _check_id(value)


class Message:
    """Base of all messages. ``TYPE`` is the wire tag."""

    __slots__ = ()
    TYPE: ClassVar[str]

    def to_wire(self) -> dict[str, object]:
        """The wire map: ``type`` first, then the fields in declaration order."""
        wire: dict[str, object] = {"type": self.TYPE}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            wire[f.name] = value.value if isinstance(value, enum.Enum) else value
        return wire


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """First message in each direction: protocol version, role, and the sender's software."""

    TYPE: ClassVar[str] = "hello"
    protocol: int = PROTOCOL_VERSION
    role: Role
    software: str

    def __post_init__(self) -> None:
        _check_int("protocol", self.protocol, 0, 2**16)
        if not isinstance(self.role, Role):
            raise _fail(f"role must be a Role, not {show(self.role)}")
        _check_str("software", self.software, max_len=_SOFTWARE_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """Ask the peer to run ``method`` with ``params``; answered by one Result or Error."""

    TYPE: ClassVar[str] = "request"
    id: int
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_token("method", self.method)
        _check_map("params", self.params)


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress(Message):
    """Progress of request ``id``: ``done`` of ``total`` units (``total`` unknown: None)."""

    TYPE: ClassVar[str] = "progress"
    id: int
    message: str
    done: int = 0
    total: int | None = None

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_str("message", self.message)
        _check_int("done", self.done, 0, 2**63 - 1)
        if self.total is not None:
            _check_int("total", self.total, 0, 2**63 - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Log(Message):
    """A log line, about request ``id`` or (``id`` None) about the connection."""

    TYPE: ClassVar[str] = "log"
    id: int | None = None
    level: LogLevel = LogLevel.INFO
    text: str

    def __post_init__(self) -> None:
        _check_optional_id(self.id)
        if not isinstance(self.level, LogLevel):
            raise _fail(f"level must be a LogLevel, not {show(self.level)}")
        _check_str("text", self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result(Message):
    """The successful answer to request ``id``."""

    TYPE: ClassVar[str] = "result"
    id: int
    value: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id)
        _check_map("value", self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """The failed answer to request ``id``; with ``id`` None, a fatal connection error."""

    TYPE: ClassVar[str] = "error"
    id: int | None
    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_optional_id(self.id)
        _check_token("code", self.code)
        _check_str("message", self.message)
        _check_map("details", self.details)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Message):
    """Ask the peer to stop request ``id``; it still answers (usually Error ``cancelled``)."""

    TYPE: ClassVar[str] = "cancel"
    id: int

    def __post_init__(self) -> None:
        _check_id(self.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye(Message):
    """The sender will send nothing more."""

    TYPE: ClassVar[str] = "goodbye"
    reason: str = ""

    def __post_init__(self) -> None:
        _check_str("reason", self.reason, max_len=4096)


MESSAGE_TYPES: Final[Mapping[str, type[Message]]] = {
    cls.TYPE: cls for cls in (Hello, Request, Progress, Log, Result, Error, Cancel, Goodbye)
}

_ENUM_FIELDS: Final[Mapping[str, Callable[[object], object]]] = {
    "role": Role,
    "level": LogLevel,
}


def _field_names(cls: type[Message]) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]


def build_message(cls: type[Message], wire: Mapping[str, object]) -> Message:
    """Build ``cls`` from a decoded map (``type`` already removed); LocalProtocolError on defect.

    Every field is required on the wire (no defaults are applied to received messages) and
    unknown fields are refused, so a Go client cannot drift silently.
    """
    expected = _field_names(cls)
    missing = sorted(expected - wire.keys())
    unknown = sorted(wire.keys() - expected)
    if missing:
        raise _fail(f"{cls.TYPE} message is missing field(s) {show(missing)}")
    if unknown:
        raise _fail(f"{cls.TYPE} message has unknown field(s) {show(unknown)}")
    kwargs: dict[str, object] = {}
    for name, raw in wire.items():
        convert = _ENUM_FIELDS.get(name)
        if convert is None:
            kwargs[name] = raw
            continue
        try:
            kwargs[name] = convert(raw)
        except ValueError:
            raise _fail(f"{name} has an unknown value {show(raw)}") from None
    return cls(**kwargs)


def message_type_of(obj: object) -> type[Message]:
    """The message class named by a decoded body's ``type`` field; Remote error if none."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"a frame must hold a map, not {type(obj).__name__}")
    tag = obj.get("type")
    cls = MESSAGE_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {show(tag)}")
    return cls
