"""PROTOCOL.md's golden vectors, checked byte for byte in both directions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mochi_pybridge.protocol import (
    Cancel,
    Connection,
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

KERNEL_SOFTWARE = "mochi-pybridge 0.1.0"
RUNNER_SOFTWARE = "mochi-pybridge-runner 0.1.0"

# name -> (sender role, message). The receiver is the other end of a kernel⇄runner connection.
VECTORS: dict[str, tuple[Role, Message]] = {
    "hello-kernel": (Role.KERNEL, Hello(role=Role.KERNEL, software=KERNEL_SOFTWARE)),
    "hello-runner": (Role.RUNNER, Hello(role=Role.RUNNER, software=RUNNER_SOFTWARE)),
    "request": (
        Role.KERNEL,
        Request(id=1, method="fetch", params={"name": "attrs", "sha256": b"\x01\x02"}),
    ),
    "progress": (Role.RUNNER, Progress(id=1, message="downloading", done=512, total=1024)),
    "progress-unknown-total": (
        Role.RUNNER,
        Progress(id=1, message="resolving", done=0, total=None),
    ),
    "log": (Role.RUNNER, Log(id=1, level=LogLevel.WARNING, text="slow index")),
    "log-connection": (Role.RUNNER, Log(id=None, level=LogLevel.INFO, text="ready")),
    "result": (
        Role.RUNNER,
        Result(id=1, value={"files": ("attrs-24.2.0-py3-none-any.whl",), "size": 63001}),
    ),
    "error": (
        Role.RUNNER,
        Error(id=1, code="integrity", message="sha256 mismatch", details={"file": "x.whl"}),
    ),
    "error-fatal": (
        Role.KERNEL,
        Error(id=None, code="version-mismatch", message="peer speaks 2"),
    ),
    "cancel": (Role.KERNEL, Cancel(id=1)),
    "goodbye": (Role.KERNEL, Goodbye(reason="done")),
}


def golden_from_protocol_md() -> dict[str, bytes]:
    text = (Path(__file__).parents[2] / "PROTOCOL.md").read_text()
    block = text.split("<!-- golden:begin -->")[1].split("<!-- golden:end -->")[0]
    return {
        m.group(1): bytes.fromhex(m.group(2))
        for m in re.finditer(r"^([a-z-]+): ([0-9a-f]+)$", block, re.MULTILINE)
    }


GOLDEN = golden_from_protocol_md()


def test_golden_vectors_cover_every_message_kind() -> None:
    assert set(GOLDEN) == set(VECTORS)
    kinds = {message.TYPE for _, message in VECTORS.values()}
    assert kinds == {"hello", "request", "progress", "log", "result", "error", "cancel", "goodbye"}


def open_pair() -> tuple[Connection, Connection]:
    """A kernel and a runner past the handshake, with request 1 pending on both sides."""
    kernel = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software=KERNEL_SOFTWARE)
    runner = Connection(role=Role.RUNNER, peer_role=Role.KERNEL, software=RUNNER_SOFTWARE)
    assert kernel.hello() == GOLDEN["hello-kernel"]
    assert runner.hello() == GOLDEN["hello-runner"]
    kernel.receive_data(GOLDEN["hello-runner"])
    runner.receive_data(GOLDEN["hello-kernel"])
    kernel.next_event(), runner.next_event()
    return kernel, runner


@pytest.mark.parametrize("name", sorted(set(VECTORS) - {"hello-kernel", "hello-runner", "request"}))
def test_golden_vector_encode_and_decode(name: str) -> None:
    sender_role, message = VECTORS[name]
    kernel, runner = open_pair()
    runner.receive_data(kernel.send(VECTORS["request"][1]))
    runner.next_event()
    sender, receiver = (kernel, runner) if sender_role is Role.KERNEL else (runner, kernel)
    assert sender.send(message).hex() == GOLDEN[name].hex()
    receiver.receive_data(GOLDEN[name])
    assert receiver.next_event() == message


def test_golden_request_encode_and_decode() -> None:
    kernel, runner = open_pair()
    assert kernel.send(VECTORS["request"][1]) == GOLDEN["request"]
    runner.receive_data(GOLDEN["request"])
    assert runner.next_event() == VECTORS["request"][1]


def test_golden_hello_decode() -> None:
    kernel, runner = open_pair()
    assert kernel.peer_hello == VECTORS["hello-runner"][1]
    assert runner.peer_hello == VECTORS["hello-kernel"][1]
