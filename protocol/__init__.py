"""Sans-IO msgpack protocol between kernel and runners, and between a client and the kernel.

Bytes in, typed and validated messages out (and back). Imports no trio, os, subprocess or
sockets: the kernel's trio shell and the runners' blocking loop both wrap ``Connection``.
The wire format is specified in PROTOCOL.md.
"""

from mochi_pybridge.protocol.connection import (
    CLOSED,
    NEED_DATA,
    Connection,
    Event,
    RequestRejected,
    Sentinel,
)
from mochi_pybridge.protocol.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from mochi_pybridge.protocol.limits import DEFAULT_LIMITS, PROTOCOL_VERSION, Limits
from mochi_pybridge.protocol.messages import (
    Cancel,
    Error,
    Goodbye,
    Hello,
    Log,
    LogLevel,
    Message,
    Progress,
    Request,
    Result,
    Role,
)
from mochi_pybridge.protocol.state import Side, State

__all__ = [
    "CLOSED",
    "DEFAULT_LIMITS",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Cancel",
    "Connection",
    "Error",
    "Event",
    "Goodbye",
    "Hello",
    "Limits",
    "LocalProtocolError",
    "Log",
    "LogLevel",
    "Message",
    "Progress",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "RequestRejected",
    "Result",
    "Role",
    "Sentinel",
    "Side",
    "State",
]
