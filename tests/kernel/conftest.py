"""Fixtures shared by the kernel tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pypiserver(tmp_path: Path) -> Iterator[str]:
    """A real index server (pypiserver) on loopback that accepts uploads."""
    packages = tmp_path / "served"
    packages.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("pypi-server")), "run", "-p", str(port), "-i", "127.0.0.1",
         "-a", ".", "-P", ".", str(packages)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
