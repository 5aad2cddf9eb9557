"""The main job against the real public index: lock examples/hello, then check every locked
wheel against an independent download."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mochi_pybridge.kernel.lockfile import parse_lock

from .test_lock import cli

pytestmark = pytest.mark.network
EXAMPLE = Path(__file__).parents[2] / "examples" / "hello"


def test_lock_examples_hello_against_pypi(tmp_path: Path) -> None:
    project = tmp_path / "hello"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("mochi.lock", "pylock.toml", "python_wrap")
    )
    cache = tmp_path / "cache"
    done = cli(project, cache, "lock", timeout=600)
    assert done.returncode == 0, done.stderr
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    names = {p.name for p in lock.packages}
    assert {"attrs", "lxml", "lxml-stubs", "requests", "toolz", "urllib3", "idna"} <= names
    assert lock.sandbox.startswith("bwrap ")
    again = cli(project, cache, "lock")
    assert again.returncode == 0
    assert "0 runner(s) started" in again.stderr
    assert cli(project, cache, "lock", "--check").returncode == 0

    # An independent download of every locked wheel (pip, outside our pipeline) hashes the same.
    downloads = tmp_path / "independent"
    for pkg in lock.packages:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--quiet", "--index-url", "https://pypi.org/simple/", "-d", str(downloads),
             f"{pkg.name}=={pkg.version}"],
            check=True, capture_output=True,
        )  # fmt: skip
        data = (downloads / pkg.wheel_filename).read_bytes()
        assert hashlib.sha256(data).hexdigest() == pkg.wheel_sha256, pkg.name
