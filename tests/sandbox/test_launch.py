"""The launcher: the protocol channel on its own descriptor, unsafe mode, fail closed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from mochi_pybridge.kernel.channel import TrioChannel
from mochi_pybridge.kernel.errors import SandboxUnavailable
from mochi_pybridge.protocol import (
    CLOSED,
    Connection,
    Goodbye,
    Hello,
    RemoteProtocolError,
    Request,
    Result,
    Role,
)
from mochi_pybridge.sandbox.availability import BWRAP_ENV
from mochi_pybridge.sandbox.launch import PROTOCOL_FD_PLACEHOLDER, launch, run
from mochi_pybridge.sandbox.policy import POLICIES, StageKind

ECHO_RUNNER = """
import os, sys
from mochi_pybridge.runners.channel import RunnerChannel
print("\\x1b[2Jnoise on stdout before hello", flush=True)
channel = RunnerChannel(int(sys.argv[1]), frozenset({"echo"}))
channel.open()
request = channel.next_request()
print("more noise", flush=True)
os.write(1, b"\\x00\\x00\\x00\\x10forged frame on stdout")
channel.progress(request.id, "echoing", 1, 1)
channel.result(request.id, dict(request.params))
channel.goodbye("done")
"""


def kernel_channel(stream: trio.SocketStream) -> TrioChannel:
    conn = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="test-kernel")
    return TrioChannel(stream, stream, conn)


async def test_protocol_runs_on_its_own_fd_and_stdout_cannot_forge_it() -> None:
    argv = [sys.executable, "-I", "-B", "-c", ECHO_RUNNER, PROTOCOL_FD_PLACEHOLDER]
    async with launch(POLICIES[StageKind.STUBGEN], argv, with_protocol=True) as stage:
        assert stage.protocol is not None
        channel = kernel_channel(stage.protocol)
        await channel.send(Hello(role=Role.KERNEL, software="test-kernel"))
        hello = await channel.receive()
        assert isinstance(hello, Hello)
        assert hello.role is Role.RUNNER
        await channel.send(Request(id=1, method="echo", params={"k": "v"}))
        events = []
        while (event := await channel.receive()) is not CLOSED:
            events.append(event)
        await stage.process.wait()
    assert [e.TYPE for e in events] == ["progress", "result", "goodbye"]  # type: ignore[union-attr]
    assert events[1] == Result(id=1, value={"k": "v"})
    assert events[2] == Goodbye(reason="done")
    assert "noise on stdout" in stage.stdout.text()
    assert "\x1b" not in stage.stdout.text()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff",  # a frame header claiming 4 GiB
        b"\x00\x00\x00\x03\xc1\xc1\xc1",  # reserved msgpack bytes
        b"\x00\x00\x00\x05\x81\xa4type\xc0",  # a map whose type is nil
    ],
    ids=["oversized", "malformed", "untyped"],
)
async def test_protocol_garbage_from_a_sandboxed_stage_is_a_remote_error(garbage: bytes) -> None:
    code = f"import os, sys; os.write(int(sys.argv[1]), {garbage!r}); import time; time.sleep(30)"
    argv = [sys.executable, "-I", "-c", code, PROTOCOL_FD_PLACEHOLDER]
    with trio.fail_after(20):
        async with launch(POLICIES[StageKind.STUBGEN], argv, with_protocol=True) as stage:
            assert stage.protocol is not None
            channel = kernel_channel(stage.protocol)
            with pytest.raises(RemoteProtocolError):
                await channel.receive()
        # Leaving the block killed and reaped the stage.
        assert stage.process.returncode is not None


async def test_runner_that_exits_early_is_a_clear_error() -> None:
    argv = [sys.executable, "-I", "-c", "raise SystemExit(3)", PROTOCOL_FD_PLACEHOLDER]
    async with launch(POLICIES[StageKind.STUBGEN], argv, with_protocol=True) as stage:
        assert stage.protocol is not None
        with pytest.raises(RemoteProtocolError, match="without goodbye"):
            await kernel_channel(stage.protocol).receive()
        assert await stage.process.wait() == 3


async def test_unsafe_no_sandbox_really_runs_unsandboxed(tmp_path: Path) -> None:
    """The flag's meaning, shown: the same read that the sandbox refuses succeeds."""
    secret = tmp_path / "secret"
    secret.write_text("visible")
    code = f"print(open({str(secret)!r}).read())"
    argv = [sys.executable, "-I", "-c", code]
    unsafe = await run(POLICIES[StageKind.STUBGEN], argv, unsafe_no_sandbox=True)
    assert unsafe.stdout.strip() == "visible"
    safe = await run(POLICIES[StageKind.STUBGEN], argv)
    assert safe.returncode != 0
    assert "No such file" in safe.stderr


async def test_launch_fails_closed_without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BWRAP_ENV, "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="not found"):
        await run(POLICIES[StageKind.STUBGEN], [sys.executable, "-c", "0"])
