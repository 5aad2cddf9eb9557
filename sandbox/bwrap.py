"""Render a stage policy and one invocation into a bubblewrap argument list. Pure.

Layout inside every sandbox: a fresh root; ``/usr`` (and the merged-usr links) read-only; the
Python runtime read-only at its host path; ``/proc``, a minimal ``/dev``; a size-capped private
``/tmp``; the stage's inputs read-only under ``/in/NAME``; its one writable directory at
``/out``. Nothing of ``$HOME``, the user's environment or another stage is visible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from mochi_pybridge.sandbox.policy import BASE_ENV, StagePolicy

SANDBOX_UID = 65534
SANDBOX_HOSTNAME = "sandbox"
OUT_DIR = "/out"
IN_DIR = "/in"


@dataclass(frozen=True, slots=True, kw_only=True)
class Invocation:
    """One run of one stage: what it gets beyond its policy.

    Directories are passed as file descriptors (``O_PATH``) the launcher opened, so a path
    swapped for a symlink after the kernel checked it cannot redirect a bind.
    """

    argv: tuple[str, ...]
    input_fds: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    output_fd: int | None = None
    runtime_paths: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    seccomp_fd: int
    chdir: str = "/tmp"


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"input name must be one path component, not {name!r}")


def render_argv(bwrap: str, policy: StagePolicy, invocation: Invocation) -> list[str]:
    args = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--assert-userns-disabled",
        "--die-with-parent",
        "--new-session",
        "--hostname", SANDBOX_HOSTNAME,
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
    ]  # fmt: skip
    if policy.network:
        args.append("--share-net")
    args.append("--clearenv")
    env = {**BASE_ENV, **policy.env, **invocation.env}
    for key in sorted(env):
        args += ["--setenv", key, env[key]]
    args += [
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--ro-bind-try", "/etc/localtime", "/etc/localtime",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(policy.limits.tmpfs_size), "--perms", "1777", "--tmpfs", "/tmp",
    ]  # fmt: skip
    for path in (*policy.system_paths, *sorted(set(invocation.runtime_paths))):
        args += ["--ro-bind-try", path, path]
    for name in sorted(invocation.input_fds):
        _check_name(name)
        args += ["--ro-bind-fd", str(invocation.input_fds[name]), f"{IN_DIR}/{name}"]
    if invocation.output_fd is not None:
        args += ["--bind-fd", str(invocation.output_fd), OUT_DIR]
    args += ["--seccomp", str(invocation.seccomp_fd), "--chdir", invocation.chdir, "--"]
    args += invocation.argv
    return args


def fds_of(invocation: Invocation) -> Sequence[int]:
    """Descriptors the bwrap process must inherit for ``invocation``."""
    fds = [invocation.seccomp_fd, *invocation.input_fds.values()]
    if invocation.output_fd is not None:
        fds.append(invocation.output_fd)
    return fds
