"""`mochi-pybridge serve` driven by a client that knows only PROTOCOL.md: it frames msgpack
maps by hand (4-byte big-endian length + body) and never uses mochi_pybridge.protocol."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ..support.index import IndexState, serve_index
from ..support.wheels import build_wheel
from .test_lock import write_project


class RawClient:
    def __init__(self, cache: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mochi_pybridge", "--cache-dir", str(cache), "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def send(self, message: dict[str, Any]) -> None:
        body = msgpack.packb(message, use_bin_type=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack(">I", len(body)) + body)
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        header = self.proc.stdout.read(4)
        assert len(header) == 4, "the kernel closed stdout"
        (length,) = struct.unpack(">I", header)
        message: dict[str, Any] = msgpack.unpackb(self.proc.stdout.read(length), raw=False)
        return message

    def hello(self) -> dict[str, Any]:
        self.send({"type": "hello", "protocol": 1, "role": "client", "software": "raw-test 1"})
        return self.receive()

    def until_answer(self, request_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        progress = []
        while True:
            message = self.receive()
            if message["type"] == "progress":
                assert message["id"] == request_id
                progress.append(message)
            elif message["type"] in ("result", "error"):
                assert message["id"] == request_id
                return progress, message

    def close(self) -> int:
        self.send({"type": "goodbye", "reason": "done"})
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, IndexState]]:
    files = tmp_path / "files"
    files.mkdir()
    build_wheel(files, "alpha", "1.0", requires=("beta",))
    build_wheel(files, "beta", "1.0")
    with serve_index(files) as served:
        yield served


def test_serve_lock_then_check_then_doctor_on_one_connection(
    tmp_path: Path, index: tuple[str, IndexState]
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = "*"')
    client = RawClient(tmp_path / "cache")
    hello = client.hello()
    assert hello == {
        "type": "hello",
        "protocol": 1,
        "role": "kernel",
        "software": hello["software"],
    }
    client.send({"type": "request", "id": 1, "method": "lock", "params": {"project": str(project)}})
    progress, answer = client.until_answer(1)
    assert answer["type"] == "result", answer
    assert answer["value"]["packages"] == 2
    assert answer["value"]["wrote"] is True
    assert any("fetch" in p["message"] for p in progress)
    assert (project / "mochi.lock").is_file()

    client.send(
        {"type": "request", "id": 2, "method": "lock.check", "params": {"project": str(project)}}
    )
    _, answer = client.until_answer(2)
    assert answer["value"]["up_to_date"] is True
    assert answer["value"]["runners_started"] == 0

    client.send({"type": "request", "id": 3, "method": "doctor", "params": {}})
    _, answer = client.until_answer(3)
    assert answer["type"] == "result"
    assert answer["value"]["ok"] is True
    assert client.close() == 0


def test_serve_errors_are_answers_not_crashes(tmp_path: Path) -> None:
    client = RawClient(tmp_path / "cache")
    client.hello()
    client.send({"type": "request", "id": 1, "method": "rm-rf", "params": {}})
    _, answer = client.until_answer(1)
    assert answer["code"] == "unknown-method"
    assert "lock" in answer["details"]["known"]
    client.send(
        {
            "type": "request",
            "id": 2,
            "method": "lock",
            "params": {"project": str(tmp_path / "nope")},
        }
    )
    _, answer = client.until_answer(2)
    assert answer["type"] == "error"
    assert "no mochi.toml" in answer["message"]
    client.send({"type": "request", "id": 3, "method": "lock", "params": {}})
    _, answer = client.until_answer(3)
    assert answer["type"] == "error"
    assert "params.project" in answer["message"]
    assert client.close() == 0


def test_serve_cancel_mid_lock(tmp_path: Path, index: tuple[str, IndexState]) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = "*"')
    client = RawClient(tmp_path / "cache")
    client.hello()
    client.send({"type": "request", "id": 7, "method": "lock", "params": {"project": str(project)}})
    first = client.receive()  # the first progress event: work is under way
    assert first["type"] == "progress"
    client.send({"type": "cancel", "id": 7})
    _, answer = client.until_answer(7)
    assert answer["type"] == "error"
    assert answer["code"] == "cancelled"
    assert not (project / "mochi.lock").exists()
    # The connection is still good for the next request.
    client.send({"type": "request", "id": 8, "method": "lock", "params": {"project": str(project)}})
    _, answer = client.until_answer(8)
    assert answer["type"] == "result"
    assert client.close() == 0


def test_serve_version_mismatch_is_reported_to_the_client(tmp_path: Path) -> None:
    client = RawClient(tmp_path / "cache")
    client.send({"type": "hello", "protocol": 99, "role": "client", "software": "future"})
    assert client.receive()["type"] == "hello"
    last = client.receive()
    assert last["type"] == "error"
    assert last["id"] is None
    assert last["code"] == "version-mismatch"
    assert client.proc.wait(30) == 1
    assert client.proc.stdout is not None and client.proc.stderr is not None
    client.proc.stdout.close()
    client.proc.stderr.close()
    assert client.proc.stdin is not None
    client.proc.stdin.close()


def test_serve_garbage_from_the_client_ends_the_connection_cleanly(tmp_path: Path) -> None:
    client = RawClient(tmp_path / "cache")
    client.hello()
    assert client.proc.stdin is not None
    client.proc.stdin.write(b"\xff\xff\xff\xff")
    client.proc.stdin.flush()
    last = client.receive()
    assert last["type"] == "error"
    assert last["code"] == "protocol-error"
    assert client.proc.wait(30) == 1
    client.proc.stdin.close()
    assert client.proc.stdout is not None and client.proc.stderr is not None
    client.proc.stdout.close()
    client.proc.stderr.close()
