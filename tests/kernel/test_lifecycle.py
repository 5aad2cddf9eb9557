"""A stage's runner process through the real sandbox: success and every way it can misbehave."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import trio
import trio.testing

from mochi_pybridge.kernel.errors import StageFailed
from mochi_pybridge.kernel.lifecycle import StageId, run_stage
from mochi_pybridge.protocol import Log, Progress
from mochi_pybridge.sandbox.launch import PROTOCOL_FD_PLACEHOLDER
from mochi_pybridge.sandbox.policy import POLICIES, StageKind

from ..support.processes import processes_with

STAGE = StageId("stubgen", "demo")
POLICY = POLICIES[StageKind.STUBGEN]

PRELUDE = """
import os, sys, time
from mochi_pybridge.runners.base import RunnerFailure, serve_one
"""


def runner(body: str) -> list[str]:
    """A runner program: PRELUDE, then ``body`` defining ``handle(request, channel)``."""
    code = PRELUDE + body + "\nserve_one({'work': handle}, sys.argv[1:])\n"
    return [sys.executable, "-I", "-B", "-c", code, "--protocol-fd", PROTOCOL_FD_PLACEHOLDER]


async def test_run_stage_success_streams_progress_and_returns_the_result(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    body = """
def handle(request, channel):
    for i in range(3):
        channel.progress(request.id, f"step {i}", i + 1, 3)
    channel.log(request.id, "hello from the runner")
    with open(os.path.join(request.params["out"], "result.txt"), "w") as f:
        f.write(request.params["word"])
    return {"ok": True, "out": request.params["out"]}
"""
    seen: list[Progress | Log] = []
    value = await run_stage(
        STAGE, POLICY, runner(body), "work", {"word": "hi", "out": "{out}"},
        output_dir=out, on_progress=seen.append,
    )  # fmt: skip
    assert value == {"ok": True, "out": "/out"}
    assert (out / "result.txt").read_text() == "hi"
    assert [e.done for e in seen if isinstance(e, Progress)] == [1, 2, 3]
    assert any(isinstance(e, Log) and "hello" in e.text for e in seen)


async def test_run_stage_runner_error_is_a_stage_failure_with_its_code() -> None:
    body = """
def handle(request, channel):
    raise RunnerFailure("integrity", "sha256 mismatch", {"file": "x.whl"})
"""
    with pytest.raises(StageFailed, match="stubgen of demo failed: sha256 mismatch") as info:
        await run_stage(STAGE, POLICY, runner(body), "work", {})
    assert info.value.code == "integrity"
    assert info.value.exit_code == 6


async def test_run_stage_runner_bug_is_reported_as_internal() -> None:
    body = """
def handle(request, channel):
    return {}[1]
"""
    with pytest.raises(StageFailed, match=r"KeyError.*\(internal\)"):
        await run_stage(STAGE, POLICY, runner(body), "work", {})


async def test_run_stage_runner_crash_mid_request() -> None:
    body = """
def handle(request, channel):
    channel.progress(request.id, "about to crash")
    sys.stderr.write("segfault-ish last words\\n")
    sys.stderr.flush()
    os._exit(7)
"""
    with pytest.raises(StageFailed) as info:
        await run_stage(STAGE, POLICY, runner(body), "work", {})
    message = info.value.diagnostics()
    assert "stubgen of demo" in message
    assert "without goodbye" in message
    assert "exited with status 7" in message
    assert "segfault-ish last words" in message


async def test_run_stage_runner_that_never_says_hello() -> None:
    argv = [sys.executable, "-I", "-c", "print('no protocol here')"]
    with pytest.raises(StageFailed, match="broke the protocol"):
        await run_stage(STAGE, POLICY, argv, "work", {})


async def test_run_stage_unknown_method_is_refused_by_the_runner() -> None:
    body = """
def handle(request, channel):
    return {}
"""
    with pytest.raises(StageFailed, match="unknown-method"):
        await run_stage(STAGE, POLICY, runner(body), "nope", {})


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xff\xff\xff", b"\x00\x00\x00\x02\x91\xc1", b"\x00\x00\x00\x01\xc0"],
    ids=["oversized", "malformed", "not-a-map"],
)
async def test_run_stage_runner_sending_garbage(garbage: bytes) -> None:
    body = f"""
def handle(request, channel):
    os.write(channel.fd, {garbage!r})
    time.sleep(60)
"""
    with trio.fail_after(30):
        with pytest.raises(StageFailed, match="broke the protocol"):
            await run_stage(STAGE, POLICY, runner(body), "work", {})


async def test_run_stage_hang_past_the_timeout_is_killed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    marker = f"hang-{uuid.uuid4().hex}"
    body = f"""
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignore the polite request too
def handle(request, channel):
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])
"""
    with pytest.raises(StageFailed, match="timed out after 5 s"):
        await run_stage(STAGE, POLICY, runner(body), "work", {}, wall_clock=5)
    assert processes_with(marker) == []


async def test_run_stage_cancel_mid_stage_sends_cancel_then_reaps(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    marker = f"cancel-{uuid.uuid4().hex}"
    body = f"""
def handle(request, channel):
    channel.progress(request.id, "working")
    while not channel.cancel_requested(request.id):
        time.sleep(0.01)
    open("/out/saw-cancel.txt", "w").write("{marker}")
    raise RunnerFailure("cancelled", "stopped on request")
"""
    started = trio.Event()

    def on_progress(event: Progress | Log) -> None:
        started.set()

    async with trio.open_nursery() as nursery:

        async def stage() -> None:
            await run_stage(STAGE, POLICY, runner(body), "work", {}, output_dir=out,
                            on_progress=on_progress)  # fmt: skip

        nursery.start_soon(stage)
        await started.wait()
        nursery.cancel_scope.cancel()
    assert (out / "saw-cancel.txt").read_text() == marker
    assert processes_with(marker) == []


async def test_run_stage_cancel_of_a_runner_that_ignores_it_escalates() -> None:
    marker = f"stubborn-{uuid.uuid4().hex}"
    body = f"""
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
def handle(request, channel):
    channel.progress(request.id, "working")
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])
"""
    started = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def stage() -> None:
                await run_stage(STAGE, POLICY, runner(body), "work", {},
                                on_progress=lambda e: started.set())  # fmt: skip

            nursery.start_soon(stage)
            await started.wait()
            nursery.cancel_scope.cancel()
    assert processes_with(marker) == []
