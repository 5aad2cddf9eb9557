"""One stage = one runner process in its sandbox, spoken to through the protocol.

Shaped like trio's ``run_process``: start, handshake (the stage has not started before the
runner's hello), one request, streamed progress and logs, exactly one result or error. On
timeout or cancellation the escalation is shielded and always ends in a reap: cancel message,
then SIGTERM, then SIGKILL of the whole sandbox. Whatever the runner does - crash, hang, exit
early, send garbage - this module returns a ``StageFailed`` naming the package and the stage;
it never crashes or hangs the kernel.
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from mochi_pybridge import __version__
from mochi_pybridge.kernel.channel import TrioChannel
from mochi_pybridge.kernel.errors import StageFailed
from mochi_pybridge.protocol import (
    CLOSED,
    Cancel,
    Connection,
    Error,
    Goodbye,
    Hello,
    Log,
    Progress,
    RemoteProtocolError,
    Request,
    Result,
    Role,
)
from mochi_pybridge.sandbox.launch import PROTOCOL_FD_PLACEHOLDER, Sandboxed, launch
from mochi_pybridge.sandbox.policy import StagePolicy
from mochi_pybridge.sandbox.runtime import python_argv

# How long each escalation step waits before the next.
CANCEL_GRACE = 1.0
TERM_GRACE = 1.0
HANDSHAKE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class StageId:
    kind: str  # fetch, stubgen, ...
    package: str  # what it works on (a package name, or "*" for project-wide stages)

    def __str__(self) -> str:
        return f"{self.kind} of {self.package}"


ProgressCallback = Callable[[Progress | Log], None]


def runner_argv(module: str) -> tuple[str, ...]:
    return python_argv(module, "--protocol-fd", PROTOCOL_FD_PLACEHOLDER)


class _Abort(Exception):
    pass


async def run_stage(
    stage: StageId,
    policy: StagePolicy,
    argv: Sequence[str],
    method: str,
    params: Mapping[str, Any],
    *,
    inputs: Mapping[str, Path] | None = None,
    output_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
    wall_clock: float | None = None,
    unsafe_no_sandbox: bool = False,
    env: Mapping[str, str] | None = None,
    extra_fds: Sequence[int] = (),
) -> Mapping[str, Any]:
    """Run one request in a fresh sandboxed runner; its result value, or ``StageFailed``.

    ``params`` may use ``{in:NAME}`` and ``{out}`` (optionally followed by ``/path``): they
    become the paths the runner sees, sandboxed or not.
    """
    limit = policy.limits.wall_clock_seconds if wall_clock is None else wall_clock
    async with launch(
        policy,
        argv,
        inputs=inputs,
        output_dir=output_dir,
        with_protocol=True,
        unsafe_no_sandbox=unsafe_no_sandbox,
        env=env,
        extra_fds=extra_fds,
    ) as sandboxed:
        assert sandboxed.protocol is not None
        conn = Connection(
            role=Role.KERNEL, peer_role=Role.RUNNER, software=f"mochi-pybridge {__version__}"
        )
        channel = TrioChannel(sandboxed.protocol, sandboxed.protocol, conn)
        try:
            with trio.fail_after(limit):
                return await _converse(stage, channel, sandboxed, method, params, on_progress)
        except trio.TooSlowError:
            await _escalate(channel, sandboxed)
            raise StageFailed(
                f"{stage} timed out after {limit:.0f} s and was killed" + _stderr_tail(sandboxed)
            ) from None
        except RemoteProtocolError as exc:
            await channel.send_fatal(exc)
            # A runner that stopped talking has usually exited: its status belongs in the
            # message. One that is still running is killed by the launcher on the way out.
            with trio.move_on_after(TERM_GRACE):
                await sandboxed.process.wait()
            raise StageFailed(
                f"{stage}: the runner broke the protocol ({exc.args[0]})"
                + _exit_note(sandboxed)
                + _stderr_tail(sandboxed)
            ) from None
        except BaseException:
            with trio.CancelScope(shield=True):
                await _escalate(channel, sandboxed)
            raise


# "{out}" or "{in:NAME}", optionally followed by "/path/inside".
_PLACEHOLDER = re.compile(r"\{(?:out|in:(?P<input>[A-Za-z0-9_.-]+))\}(?P<rest>/.*)?")


def _substitute(value: Any, sandboxed: Sandboxed) -> Any:
    if isinstance(value, str):
        match = _PLACEHOLDER.fullmatch(value)
        if match is None:
            return value
        name, rest = match.group("input"), match.group("rest") or ""
        base = sandboxed.input_path(name) if name is not None else sandboxed.out_path
        return base + rest
    if isinstance(value, list | tuple):
        return [_substitute(v, sandboxed) for v in value]
    if isinstance(value, Mapping):
        return {k: _substitute(v, sandboxed) for k, v in value.items()}
    return value


async def _converse(
    stage: StageId,
    channel: TrioChannel,
    sandboxed: Sandboxed,
    method: str,
    params: Mapping[str, Any],
    on_progress: ProgressCallback | None,
) -> Mapping[str, Any]:
    await channel.send(Hello(role=Role.KERNEL, software=channel.conn.software))
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        hello = await channel.receive()
    if not isinstance(hello, Hello):
        raise RemoteProtocolError(f"expected hello, got {hello!r:.80}")
    await channel.send(Request(id=1, method=method, params=_substitute(params, sandboxed)))
    while True:
        event = await channel.receive()
        if isinstance(event, Progress | Log):
            if on_progress is not None:
                on_progress(event)
        elif isinstance(event, Result):
            await _finish(channel, sandboxed)
            return event.value
        elif isinstance(event, Error):
            await _finish(channel, sandboxed)
            raise StageFailed(
                f"{stage} failed: {event.message} ({event.code})" + _stderr_tail(sandboxed),
                code=event.code,
                details=dict(event.details),
            )
        elif event is CLOSED or isinstance(event, Goodbye):
            raise RemoteProtocolError("the runner said goodbye before answering")


async def _finish(channel: TrioChannel, sandboxed: Sandboxed) -> None:
    """Say goodbye and give the runner a moment to exit by itself."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await channel.send(Goodbye(reason="done"))
    with trio.move_on_after(TERM_GRACE):
        await sandboxed.process.wait()


async def _escalate(channel: TrioChannel, sandboxed: Sandboxed) -> None:
    """Cancel message, then SIGTERM, then SIGKILL; the launcher reaps afterwards."""
    if sandboxed.process.returncode is not None:
        return
    if 1 in channel.conn.pending_requests:
        try:
            with trio.move_on_after(CANCEL_GRACE):
                await channel.send(Cancel(id=1))
                await sandboxed.process.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    if sandboxed.process.returncode is None:
        try:
            sandboxed.process.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        with trio.move_on_after(TERM_GRACE):
            await sandboxed.process.wait()
    if sandboxed.process.returncode is None:
        sandboxed.kill()


def _exit_note(sandboxed: Sandboxed) -> str:
    code = sandboxed.process.returncode
    return "" if code is None else f"; it exited with status {code}"


def _stderr_tail(sandboxed: Sandboxed) -> str:
    text = sandboxed.stderr.text().strip()
    if not text:
        return ""
    tail = "\n".join(text.splitlines()[-8:])
    return f"\n--- runner stderr (last lines) ---\n{tail}"
