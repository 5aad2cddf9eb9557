"""Process-count limits through a cgroup ``pids`` controller, when this machine lets us.

bubblewrap has no limits of its own. RLIMIT_NPROC counts every process of the (host) uid, so
it is only a fallback: with cgroup v2 delegated to us, or the v1 ``pids`` controller writable
(root), each stage gets its own group with ``pids.max``, and every process left in it is
killed when the stage ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

_V1_ROOT = Path("/sys/fs/cgroup/pids")
_V2_ROOT = Path("/sys/fs/cgroup")
_GROUP_PREFIX = "mochi-pybridge"


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    parent: Path | None  # where per-stage groups are made; None: unavailable
    kind: str  # "v2", "v1-pids" or "none"
    reason: str  # why not, when unavailable


def _own_v2_group() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return _V2_ROOT / line[3:].lstrip("/")
    except OSError:
        return None
    return None


@functools.cache
def detect() -> CgroupSupport:
    """What this process may use; it does not change while we run, so it is read once."""
    own = _own_v2_group()
    if own is not None and (own / "cgroup.subtree_control").exists():
        try:
            controllers = (own / "cgroup.controllers").read_text().split()
        except OSError:
            controllers = []
        if "pids" in controllers and os.access(own, os.W_OK):
            return CgroupSupport(own, "v2", "")
    if (_V1_ROOT / "cgroup.procs").exists() and os.access(_V1_ROOT, os.W_OK):
        return CgroupSupport(_V1_ROOT, "v1-pids", "")
    return CgroupSupport(
        None,
        "none",
        "no writable cgroup with the pids controller (neither a delegated cgroup v2 "
        "nor the v1 pids hierarchy); process counts fall back to RLIMIT_NPROC",
    )


class StageCgroup:
    """One stage's group: create, let the child join, kill what is left, remove."""

    def __init__(self, support: CgroupSupport, max_pids: int) -> None:
        assert support.parent is not None
        self.path = support.parent / f"{_GROUP_PREFIX}-{uuid.uuid4().hex[:16]}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_pids))
        self._procs = str(self.path / "cgroup.procs")

    def join(self) -> None:
        """Called in the child between fork and exec: move ourselves into the group."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def pids(self) -> list[int]:
        try:
            text = Path(self._procs).read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()
