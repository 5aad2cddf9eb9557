"""The fetch runner's two resolvers against a real local index: uv (the default) and pip's
resolver (the fallback when uv cannot run) must pin the same packages to the same files."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mochi_pybridge.runners.fetch import _from_pylock, _pip_resolve, _uv_argv

from ..support.index import serve_index
from ..support.wheels import build_wheel


@pytest.fixture
def index(tmp_path: Path) -> Iterator[str]:
    files = tmp_path / "index-files"
    files.mkdir()
    build_wheel(files, "alpha", "1.0", requires=("beta>=1", "gamma; extra == 'fast'"),
                extras=("fast",))  # fmt: skip
    build_wheel(files, "alpha", "2.0", requires=("beta>=1",))
    build_wheel(files, "beta", "1.0")
    build_wheel(files, "beta", "1.5")
    build_wheel(files, "gamma", "0.3")
    with serve_index(files) as (url, _):
        yield url


def pins(packages: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(p["name"], p["version"], p["wheels"][0]["sha256"]) for p in packages}


def test_pip_fallback_pins_what_uv_pins(tmp_path: Path, index: str) -> None:
    requirements = tmp_path / "requirements.in"
    requirements.write_text("alpha[fast]<2\n")
    params = {"indexes": [index], "python_version": "3.11"}
    done = subprocess.run(_uv_argv(params, requirements, tmp_path / "pylock.toml"),
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    by_uv = pins(_from_pylock(tmp_path / "pylock.toml"))
    pip_tmp = tmp_path / "pip"
    pip_tmp.mkdir()
    by_pip = pins(_pip_resolve(params, requirements, pip_tmp))
    assert {(n, v) for n, v, _ in by_uv} == {("alpha", "1.0"), ("beta", "1.5"), ("gamma", "0.3")}
    assert by_pip == by_uv
    assert all(len(sha) == 64 for _, _, sha in by_pip)
