"""The main job against the real public index: lock examples/hello, then check every locked
wheel against an independent download."""

from __future__ import annotations

import hashlib
import json
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


def test_hello_wrappers_call_real_packages(tmp_path: Path) -> None:
    """The compiled wrappers of examples/hello, next to its locked packages installed from
    pylock.toml, call the real code of real PyPI packages."""
    project = tmp_path / "hello"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("mochi.lock", "pylock.toml", "python_wrap")
    )
    assert cli(project, tmp_path / "cache", "lock", timeout=600).returncode == 0
    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "-r", str(project / "pylock.toml")], check=True)  # fmt: skip
    code = f"""
import json, sys
sys.path.insert(0, {str(project / "python_wrap" / "toolz")!r})
import _mochi_toolz as toolz
print(json.dumps([toolz.partition_all(2, [1, 2, 3, 4, 5]), toolz.frequencies("abca")]))
for alias in ("attrs", "http", "etree", "yaml"):
    sys.path.insert(0, {str(project / "python_wrap")!r} + "/" + alias)
import _mochi_attrs, _mochi_requests, _mochi_lxml_etree, _mochi_yaml
assert issubclass(_mochi_yaml.PythonTypeMismatch, TypeError)
"""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[[1, 2], [3, 4], [5]], {"a": 2, "b": 1, "c": 1}]
