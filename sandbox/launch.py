"""Start a command inside a stage's sandbox; the only module here with side effects.

``launch`` is an async context manager (trio): it prepares the seccomp program and the bind
descriptors, starts bubblewrap with the resource limits applied, captures stdout/stderr with a
cap, and on exit - normal, error or cancellation - kills the whole sandbox and reaps it. Killing
the outer bwrap process tears down the sandbox's pid namespace (``--die-with-parent`` on the
namespace's init), so a double-forked daemon dies with it; the stage's cgroup, when there is
one, is emptied as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mochi_pybridge.sandbox import cgroups
from mochi_pybridge.sandbox.availability import find_bwrap
from mochi_pybridge.sandbox.bwrap import IN_DIR, OUT_DIR, Invocation, fds_of, render_argv
from mochi_pybridge.sandbox.logs import CappedBuffer
from mochi_pybridge.sandbox.policy import BASE_ENV, StagePolicy
from mochi_pybridge.sandbox.runtime import runtime_paths
from mochi_pybridge.sandbox.seccomp import bpf_program

PROTOCOL_FD_PLACEHOLDER = "{protocol_fd}"
_warned: set[str] = set()


@dataclass
class Sandboxed:
    """A running stage. Paths in ``argv``/requests must use ``input_path``/``out_path``."""

    process: trio.Process
    protocol: trio.SocketStream | None
    stdout: CappedBuffer
    stderr: CappedBuffer
    sandboxed: bool
    inputs: Mapping[str, Path]
    output_dir: Path | None
    cgroup: cgroups.StageCgroup | None = None
    # Why the launcher killed the stage on its own (output quota), if it did.
    quota_exceeded: str = field(default="")

    def input_path(self, name: str) -> str:
        return f"{IN_DIR}/{name}" if self.sandboxed else str(self.inputs[name])

    @property
    def out_path(self) -> str:
        if self.output_dir is None:
            raise ValueError("this stage has no output directory")
        return OUT_DIR if self.sandboxed else str(self.output_dir)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()


def _limits_preexec(policy: StagePolicy, cgroup: cgroups.StageCgroup | None) -> Callable[[], None]:
    limits = policy.limits

    def apply() -> None:
        # Runs in the child between fork and exec: no allocation-heavy work, no locks.
        if cgroup is not None:
            cgroup.join()
        else:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _sealed_memfd(data: bytes) -> int:
    """A read-only, sealed in-memory file holding ``data``, positioned at its start."""
    fd = os.memfd_create("mochi-seccomp", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    fcntl.fcntl(
        fd,
        fcntl.F_ADD_SEALS,
        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
    )
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _open_dir(path: Path) -> int:
    """An O_PATH descriptor of a real directory (not a symlink) for ``--bind-fd``."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags)


async def _pump(stream: trio.abc.ReceiveStream | None, sink: CappedBuffer) -> None:
    if stream is None:
        return
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        while chunk := await stream.receive_some(65536):
            sink.feed(bytes(chunk))


@contextlib.asynccontextmanager
async def launch(
    policy: StagePolicy,
    argv: Sequence[str],
    *,
    inputs: Mapping[str, Path] | None = None,
    output_dir: Path | None = None,
    with_protocol: bool = False,
    env: Mapping[str, str] | None = None,
    unsafe_no_sandbox: bool = False,
    log_cap: int = 64 * 1024,
    extra_fds: Sequence[int] = (),
) -> AsyncIterator[Sandboxed]:
    """Run ``argv`` under ``policy``. ``{protocol_fd}`` in argv becomes the channel's fd.

    ``inputs`` are directories shown read-only at ``/in/NAME``; ``output_dir`` must be a fresh,
    empty directory the kernel created, shown writable at ``/out``. ``extra_fds`` are inherited
    by the stage under the same numbers (e.g. a pipe carrying a secret that must not appear in
    the environment or argv).
    """
    inputs = dict(inputs or {})
    if output_dir is not None and os.listdir(output_dir):
        raise ValueError(f"output directory {output_dir} is not empty")
    with contextlib.ExitStack() as stack:
        parent_sock = child_sock = None
        if with_protocol:
            parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            stack.callback(child_sock.close)
            os.set_inheritable(child_sock.fileno(), True)
        pass_fds: list[int] = [child_sock.fileno()] if child_sock is not None else []
        pass_fds += extra_fds
        command = [
            a.replace(PROTOCOL_FD_PLACEHOLDER, str(pass_fds[0])) if child_sock else a for a in argv
        ]
        support = cgroups.detect()
        cgroup = None
        if support.parent is not None:
            cgroup = cgroups.StageCgroup(support, policy.limits.processes)
            stack.callback(cgroup.remove)
        else:
            _warn_nproc_once(support.reason)
        if unsafe_no_sandbox:
            full_argv = command
            child_env = {**BASE_ENV, **policy.env, **(env or {})}
            child_env["HOME"] = str(Path.home())
        else:
            bpf_fd = stack.enter_context(_closing_fd(_sealed_memfd(bpf_program(policy))))
            input_fds: dict[str, int] = {
                name: stack.enter_context(_closing_fd(_open_dir(p))) for name, p in inputs.items()
            }
            out_fd = stack.enter_context(_closing_fd(_open_dir(output_dir))) if output_dir else None
            invocation = Invocation(
                argv=tuple(command),
                input_fds=input_fds,
                output_fd=out_fd,
                runtime_paths=runtime_paths(),
                env=dict(env or {}),
                seccomp_fd=bpf_fd,
            )
            full_argv = render_argv(find_bwrap(), policy, invocation)
            pass_fds += fds_of(invocation)
            child_env = {}
        process = await trio.lowlevel.open_process(
            full_argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            env=child_env,
            preexec_fn=_limits_preexec(policy, cgroup),
        )
        protocol = None
        if parent_sock is not None:
            child_sock.close()  # type: ignore[union-attr]
            protocol = trio.SocketStream(trio.socket.from_stdlib_socket(parent_sock))
        handle = Sandboxed(
            process=process,
            protocol=protocol,
            stdout=CappedBuffer(log_cap),
            stderr=CappedBuffer(log_cap),
            sandboxed=not unsafe_no_sandbox,
            inputs=inputs,
            output_dir=output_dir,
            cgroup=cgroup,
        )
        try:
            # The helper tasks never raise, so a group out of this nursery holds only what
            # the caller's block raised: hand that on unwrapped.
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, process.stdout, handle.stdout)
                    nursery.start_soon(_pump, process.stderr, handle.stderr)
                    if output_dir is not None:
                        nursery.start_soon(_watch_output, handle, policy)
                    try:
                        yield handle
                    finally:
                        with trio.CancelScope(shield=True):
                            await _reap(handle)
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise
        finally:
            if protocol is not None:
                with trio.CancelScope(shield=True):
                    await protocol.aclose()


def _output_usage(root: Path, max_entries: int) -> tuple[int, int]:
    """(allocated bytes, entries) under ``root``, without following links; stops past max."""
    used = entries = 0
    stack = [str(root)]
    while stack and entries <= max_entries:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as it:
            for entry in it:
                entries += 1
                st = entry.stat(follow_symlinks=False)
                used += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return used, entries


async def _watch_output(handle: Sandboxed, policy: StagePolicy) -> None:
    """Kill the stage when its output directory grows past the policy's quota."""
    assert handle.output_dir is not None
    limits = policy.limits
    while handle.process.returncode is None:
        used, entries = await trio.to_thread.run_sync(
            _output_usage, handle.output_dir, limits.output_entries
        )
        if used > limits.output_bytes or entries > limits.output_entries:
            handle.quota_exceeded = (
                f"output directory over quota ({used} bytes, {entries} entries; limits "
                f"{limits.output_bytes} bytes, {limits.output_entries} entries)"
            )
            handle.kill()
            return
        await trio.sleep(0.2)


async def _reap(handle: Sandboxed) -> None:
    """Kill whatever is left of the stage and wait for it: no orphan, no zombie."""
    if handle.process.returncode is None:
        handle.kill()
    await handle.process.wait()
    if handle.cgroup is not None:
        # The pid namespace is gone with bwrap; a cgroup straggler would be a sandbox bug.
        for _ in range(50):
            if not handle.cgroup.pids():
                break
            handle.cgroup.kill_all()
            await trio.sleep(0.01)


@contextlib.contextmanager
def _closing_fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _warn_nproc_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        print(f"warning: {reason}", file=sys.stderr)


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    quota_exceeded: str


async def run(
    policy: StagePolicy,
    argv: Sequence[str],
    *,
    wall_clock: float | None = None,
    **kwargs: object,
) -> Completed:
    """Run to completion (or for ``wall_clock`` s, default the policy's limit) and report."""
    limit = policy.limits.wall_clock_seconds if wall_clock is None else wall_clock
    timed_out = False
    async with launch(policy, argv, **kwargs) as handle:  # type: ignore[arg-type]
        with trio.move_on_after(limit) as scope:
            await handle.process.wait()
        if scope.cancelled_caught:
            timed_out = True
            handle.kill()
            await handle.process.wait()
    return Completed(
        returncode=handle.process.returncode if handle.process.returncode is not None else -1,
        stdout=handle.stdout.text(),
        stderr=handle.stderr.text(),
        timed_out=timed_out,
        quota_exceeded=handle.quota_exceeded,
    )
