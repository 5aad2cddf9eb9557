"""``mochi-pybridge serve``: the kernel as a service for an embedding client (the Mochi CLI).

The protocol of PROTOCOL.md runs on stdin (client → kernel) and stdout (kernel → client), role
``client`` ⇄ ``kernel``. Each request streams ``progress`` events and ends in one ``result`` or
``error``; ``cancel`` stops a running request; requests run one after another. stdout carries
nothing but frames: everything else the kernel prints goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from mochi_pybridge import __version__
from mochi_pybridge.kernel.channel import TrioChannel
from mochi_pybridge.kernel.errors import ExitCode, PybridgeError
from mochi_pybridge.kernel.events import StageEvent
from mochi_pybridge.protocol import (
    CLOSED,
    Cancel,
    Connection,
    Error,
    Goodbye,
    Hello,
    Progress,
    RemoteProtocolError,
    Request,
    RequestRejected,
    Result,
    Role,
)

_CODES = {
    ExitCode.INTEGRITY: "integrity",
    ExitCode.SANDBOX_UNAVAILABLE: "sandbox",
    ExitCode.CAPABILITY_ELEVATION: "capability-elevation",
    ExitCode.USAGE: "invalid-params",
}


class ProgressSink:
    """Turns stage events into ``progress`` messages for one request."""

    def __init__(self, channel: TrioChannel, request_id: int) -> None:
        self.channel = channel
        self.request_id = request_id
        self.pending: list[Progress] = []
        self.wakeup = trio.Event()

    def emit(self, event: StageEvent) -> None:
        text = f"{event.kind} {event.stage} {event.package} {event.message}".strip()
        self.pending.append(
            Progress(id=self.request_id, message=text[:4000], done=event.done, total=event.total)
        )
        self.wakeup.set()

    def close(self) -> None:
        self.wakeup.set()

    async def pump(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            while self.pending:
                await self.channel.send(self.pending.pop(0))


def _namespace(params: Mapping[str, Any], defaults: argparse.Namespace) -> argparse.Namespace:
    project = params.get("project")
    if not isinstance(project, str) or not project:
        raise PybridgeError("params.project must be the project directory (a string)")
    cache = params.get("cache_dir", str(defaults.cache_dir))
    jobs = params.get("jobs", defaults.jobs)
    if not isinstance(cache, str) or type(jobs) is not int or jobs < 1:
        raise PybridgeError("params.cache_dir must be a string and params.jobs a positive int")
    return argparse.Namespace(
        project=Path(project),
        cache_dir=Path(cache),
        jobs=jobs,
        json=True,
        quiet=1,
        verbose=0,
        unsafe_no_sandbox=bool(params.get("unsafe_no_sandbox", False)),
        no_wait=bool(params.get("no_wait", False)),
    )


async def _lock(
    params: Mapping[str, Any], sink: ProgressSink, defaults: argparse.Namespace, *, check: bool
) -> dict[str, Any]:
    from mochi_pybridge.kernel.commands import run_lock

    report = await run_lock(_namespace(params, defaults), sink, check=check)
    assert report.data is not None
    return {
        "packages": len(report.data.packages),
        "up_to_date": not report.drift,
        "drift": report.drift,
        "wrote": report.wrote,
        "runners_started": report.runners_started,
        "seconds": round(report.seconds, 3),
    }


async def _add(
    params: Mapping[str, Any], sink: ProgressSink, defaults: argparse.Namespace
) -> dict[str, Any]:
    from mochi_pybridge.kernel.commands import add_to_manifest

    spec = params.get("spec")
    if not isinstance(spec, str):
        raise PybridgeError("params.spec must be a requirement string like 'requests>=2.31'")
    extras = params.get("extras", [])
    args = _namespace(params, defaults)
    add_to_manifest(args.project.resolve(), spec, [str(e) for e in extras])
    return await _lock(params, sink, defaults, check=False)


async def _sync(
    params: Mapping[str, Any], sink: ProgressSink, defaults: argparse.Namespace
) -> dict[str, Any]:
    result = await _lock(params, sink, defaults, check=True)
    if result["drift"]:
        raise PybridgeError(
            "mochi.lock does not match mochi.toml; run lock first: " + "; ".join(result["drift"])
        )
    return result


async def _doctor(
    params: Mapping[str, Any], sink: ProgressSink, defaults: argparse.Namespace
) -> dict[str, Any]:
    from dataclasses import asdict

    from mochi_pybridge.kernel.doctor import diagnose

    report = await trio.to_thread.run_sync(diagnose)
    return asdict(report)


Method = Callable[[Mapping[str, Any], ProgressSink, argparse.Namespace], Awaitable[dict[str, Any]]]
METHODS: Mapping[str, Method] = {
    "lock": lambda p, s, d: _lock(p, s, d, check=False),
    "lock.check": lambda p, s, d: _lock(p, s, d, check=True),
    "add": _add,
    "sync": _sync,
    "doctor": _doctor,
}


async def serve(defaults: argparse.Namespace, stdin_fd: int, stdout_fd: int) -> int:
    send_stream = trio.lowlevel.FdStream(stdout_fd)
    receive_stream = trio.lowlevel.FdStream(stdin_fd)
    conn = Connection(
        role=Role.KERNEL,
        peer_role=Role.CLIENT,
        software=f"mochi-pybridge {__version__}",
        methods=frozenset(METHODS),
    )
    channel = TrioChannel(send_stream, receive_stream, conn)
    running: dict[int, trio.CancelScope] = {}
    queue_send, queue_receive = trio.open_memory_channel[Request](64)

    async def worker() -> None:
        async for request in queue_receive:
            scope = running.get(request.id)
            if scope is None:
                continue
            await run_request(request, scope)

    async def run_request(request: Request, scope: trio.CancelScope) -> None:
        sink = ProgressSink(channel, request.id)
        answer: Result | Error
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.pump)
            with scope:
                try:
                    value = await METHODS[request.method](request.params, sink, defaults)
                    answer = Result(id=request.id, value=value)
                except PybridgeError as exc:
                    code = _CODES.get(exc.exit_code, "failed")
                    answer = Error(
                        id=request.id,
                        code=code,
                        message=exc.diagnostics()[:60000],
                        details={"exit_code": int(exc.exit_code)},
                    )
                except Exception as exc:
                    answer = Error(
                        id=request.id,
                        code="internal",
                        message=f"{type(exc).__name__}: {exc}"[:60000],
                    )
            if scope.cancelled_caught:
                answer = Error(id=request.id, code="cancelled", message="cancelled by the client")
            await trio.lowlevel.checkpoint()
            while sink.pending:
                await channel.send(sink.pending.pop(0))
            nursery.cancel_scope.cancel()
        running.pop(request.id, None)
        await channel.send(answer)

    await channel.send(Hello(role=Role.KERNEL, software=conn.software))
    failure: RemoteProtocolError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        try:
            while True:
                event = await channel.receive()
                if isinstance(event, Request):
                    running[event.id] = trio.CancelScope()
                    await queue_send.send(event)
                elif isinstance(event, RequestRejected):
                    await channel.send(event.reply)
                elif isinstance(event, Cancel):
                    scope = running.get(event.id)
                    if scope is not None:
                        scope.cancel()
                elif event is CLOSED or isinstance(event, Goodbye | Error):
                    break
        except RemoteProtocolError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        print(f"error: {failure.diagnostics()}", file=sys.stderr)
        await channel.send_fatal(failure)
        return int(ExitCode.FAILURE)
    if conn.our_state.value == "open":
        await channel.send(Goodbye(reason="bye"))
    return int(ExitCode.OK)


def run_serve(args: argparse.Namespace) -> int:
    # Frames alone go to the real stdout; anything printed goes to stderr.
    stdout_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return trio.run(serve, args, 0, stdout_fd)
