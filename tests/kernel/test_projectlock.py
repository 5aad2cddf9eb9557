"""One lock at a time per project, across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from mochi_pybridge.kernel.projectlock import ProjectBusy, project_lock

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


async def test_project_lock_no_wait_fails_clearly_while_another_process_holds_it(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / ".mochi-pybridge.lock"), "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ProjectBusy, match="another mochi-pybridge"):
            async with project_lock(tmp_path, wait=False):
                pass
    finally:
        holder.kill()
        holder.communicate()


async def test_project_lock_waits_for_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / ".mochi-pybridge.lock"), "0.5"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    with trio.fail_after(10):
        async with project_lock(tmp_path):
            # We only get here once the holder let go (it exits after 0.5 s).
            assert holder.wait(5) == 0
    holder.communicate()
    assert "waiting for another mochi-pybridge" in capsys.readouterr().err
