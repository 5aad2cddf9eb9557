"""Each stage kind's sandbox policy, as plain data (SPEC §7; prior-art note §6).

A policy says what a stage may see and do; ``bwrap.render_argv`` and ``seccomp.build_filter``
turn it into a bubblewrap command line and a BPF program, and ``launch`` applies the limits.
Nothing in this module has side effects.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

GiB = 1024**3
MiB = 1024**2


class StageKind(enum.Enum):
    FETCH = "fetch"
    STUBGEN = "stubgen"
    SYNTHESIS = "synthesis"
    COMPILE = "compile"
    SIGN = "sign"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceLimits:
    """Per-stage limits. rlimits apply per process; ``processes`` uses a cgroup where possible."""

    address_space: int = 4 * GiB  # RLIMIT_AS
    cpu_seconds: int = 300  # RLIMIT_CPU (SIGXCPU, then SIGKILL)
    file_size: int = 512 * MiB  # RLIMIT_FSIZE: largest file a stage may write
    open_files: int = 256  # RLIMIT_NOFILE
    processes: int = 64  # cgroup pids.max (fallback: RLIMIT_NPROC)
    wall_clock_seconds: float = 300.0  # enforced by the kernel/launcher
    tmpfs_size: int = 256 * MiB  # size cap of the private /tmp
    # The output directory is a host directory: a watchdog kills the stage past these.
    output_bytes: int = 1 * GiB  # allocated blocks, so sparse files count as written
    output_entries: int = 50_000


@dataclass(frozen=True, slots=True, kw_only=True)
class StagePolicy:
    kind: StageKind
    network: bool
    # Socket address families the stage may create (by name, see seccomp.SOCKET_FAMILIES).
    socket_families: frozenset[str]
    # Host paths shown read-only at the same place (beyond /usr and the Python runtime).
    system_paths: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    limits: ResourceLimits = ResourceLimits()
    # Extra syscalls denied with EPERM for this stage only.
    extra_denied_syscalls: tuple[str, ...] = ()
    # Reaches the network only through the kernel's allow-listing egress proxy (a Unix socket
    # bound at /in/proxy), with the host's TLS trust settings.
    egress: bool = False


BASE_ENV: Mapping[str, str] = MappingProxyType(
    {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "TMPDIR": "/tmp",
    }
)

# What a TLS client needs to verify servers (the system trust store and resolver files).
_NETWORK_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
)

POLICIES: Mapping[StageKind, StagePolicy] = MappingProxyType(
    {
        StageKind.FETCH: StagePolicy(
            kind=StageKind.FETCH,
            # No route of its own: the indexes are reached through the kernel's allow-listing
            # egress proxy (a Unix socket), relayed from a loopback port inside the sandbox.
            network=False,
            egress=True,
            socket_families=frozenset({"unix", "inet"}),
            system_paths=_NETWORK_FILES,
            # uv's cache lives in the stage's private /tmp; its concurrency is bounded because
            # each open connection costs two relay threads.
            env=MappingProxyType(
                {
                    "UV_CACHE_DIR": "/tmp/uv-cache",
                    "UV_NO_PROGRESS": "1",
                    "UV_CONCURRENT_DOWNLOADS": "16",
                }
            ),
            # Threads count: uv's pool plus two relay threads per open connection.
            limits=ResourceLimits(wall_clock_seconds=900.0, file_size=2 * GiB, processes=256),
        ),
        StageKind.STUBGEN: StagePolicy(
            kind=StageKind.STUBGEN,
            network=False,
            socket_families=frozenset({"unix"}),
            limits=ResourceLimits(wall_clock_seconds=120.0, cpu_seconds=120),
        ),
        StageKind.SYNTHESIS: StagePolicy(
            kind=StageKind.SYNTHESIS,
            network=False,
            socket_families=frozenset({"unix"}),
            limits=ResourceLimits(wall_clock_seconds=120.0, cpu_seconds=120),
        ),
        StageKind.COMPILE: StagePolicy(
            kind=StageKind.COMPILE,
            network=False,
            socket_families=frozenset({"unix"}),
            # On Debian, /usr/bin/cc resolves through /etc/alternatives.
            system_paths=("/etc/alternatives",),
            env=MappingProxyType({"LC_ALL": "C", "SOURCE_DATE_EPOCH": "0"}),
            limits=ResourceLimits(wall_clock_seconds=300.0),
            extra_denied_syscalls=("setxattr", "lsetxattr", "fsetxattr"),
        ),
        StageKind.SIGN: StagePolicy(
            kind=StageKind.SIGN,
            network=False,
            egress=True,  # the signing services only
            socket_families=frozenset({"unix", "inet"}),
            system_paths=_NETWORK_FILES,
            limits=ResourceLimits(wall_clock_seconds=300.0),
        ),
    }
)
