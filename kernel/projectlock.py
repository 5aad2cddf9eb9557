"""One ``lock`` at a time per project: an advisory file lock next to mochi.lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from mochi_pybridge.kernel.errors import PybridgeError

LOCK_NAME = ".mochi-pybridge.lock"


class ProjectBusy(PybridgeError):
    """Another mochi-pybridge process holds the project lock (and --no-wait was given)."""


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.asynccontextmanager
async def project_lock(project: Path, *, wait: bool = True) -> AsyncIterator[None]:
    """Hold the project's lock; wait for it (saying so once) or fail at once."""
    path = project / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            if not wait:
                raise ProjectBusy(
                    f"another mochi-pybridge is working on {project} (lock file {path}); "
                    "wait for it or run without --no-wait"
                )
            print(f"waiting for another mochi-pybridge working on {project} …", file=sys.stderr)
            # flock has no async form; polling keeps the wait cancellable (Ctrl-C).
            while not _try_lock(fd):  # noqa: ASYNC110
                await trio.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock
