"""Property tests: round trips of arbitrary valid messages, and arbitrary bytes never crash."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mochi_pybridge.protocol import (
    NEED_DATA,
    Cancel,
    Connection,
    Error,
    Log,
    LogLevel,
    Progress,
    RemoteProtocolError,
    Request,
    Result,
    Role,
)

from .helpers import pair

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
params = st.dictionaries(st.text(max_size=8), values, max_size=5)
tokens = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True)


def tupled(value: object) -> object:
    """What a decoded value looks like: arrays arrive as tuples."""
    if isinstance(value, list | tuple):
        return tuple(tupled(v) for v in value)
    if isinstance(value, dict):
        return {k: tupled(v) for k, v in value.items()}
    return value


@settings(max_examples=200, deadline=None)
@given(method=tokens, p=params, v=params, code=tokens, text=st.text(max_size=50))
def test_Connection_roundtrip_of_arbitrary_valid_messages(
    method: str, p: dict[str, object], v: dict[str, object], code: str, text: str
) -> None:
    req, resp = pair()
    resp.receive_data(req.send(Request(id=1, method=method, params=p)))
    assert resp.next_event() == Request(id=1, method=method, params=tupled(p))  # type: ignore[arg-type]
    resp.receive_data(req.send(Request(id=2, method=method)))
    resp.next_event()
    resp.receive_data(req.send(Cancel(id=2)))
    assert resp.next_event() == Cancel(id=2)
    outgoing = [
        Progress(id=1, message=text, done=3, total=None),
        Log(id=1, level=LogLevel.ERROR, text=text),
        Result(id=1, value=v),
        Error(id=2, code=code, message=text, details=v),
    ]
    data = b"".join(resp.send(m) for m in outgoing)
    req.receive_data(data)
    received = []
    while (event := req.next_event()) is not NEED_DATA:
        received.append(event)
    assert received[:2] == outgoing[:2]
    assert received[2] == Result(id=1, value=tupled(v))  # type: ignore[arg-type]
    assert received[3] == Error(id=2, code=code, message=text, details=tupled(v))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_Connection_arbitrary_bytes_only_raise_RemoteProtocolError(
    data: bytes, cuts: list[int]
) -> None:
    for prefix_hello in (False, True):
        conn = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="k")
        conn.hello()
        if prefix_hello:
            conn.receive_data(
                Connection(role=Role.RUNNER, peer_role=Role.KERNEL, software="r").hello()
            )
        points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
        try:
            for a, b in itertools.pairwise(points):
                conn.receive_data(data[a:b])
                while conn.next_event() is not NEED_DATA:
                    pass
            conn.receive_data(b"")
            conn.next_event()
        except RemoteProtocolError:
            pass


def test_protocol_imports_no_io() -> None:
    """protocol/ is sans-IO: no trio, os, subprocess, socket, asyncio or select."""
    banned = {"trio", "os", "subprocess", "socket", "asyncio", "select", "selectors", "io"}
    root = Path(__file__).parents[2] / "protocol"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
