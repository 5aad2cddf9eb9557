"""Canary packages for the hostile suite: built by the tests, imported inside a stage's sandbox.

A canary is a real Python package whose ``__init__`` really attempts one hostile behaviour when
it is imported, then records what happened to each attempt in ``/out/attempts.json``. The
record is the canary's own word; every test also checks the host side (canary files, listeners,
processes) to prove that nothing outside the sandbox changed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from mochi_pybridge.sandbox.launch import Completed, run
from mochi_pybridge.sandbox.policy import POLICIES, StageKind, StagePolicy

# Prepended to every canary: a helper that records the outcome of one attempt.
PRELUDE = """
import errno as _errno, json as _json, os as _os

_ATTEMPTS = {}

def attempt(name, fn):
    try:
        result = fn()
    except OSError as exc:
        _ATTEMPTS[name] = "blocked:" + _errno.errorcode.get(exc.errno or 0, str(exc.errno))
    except Exception as exc:
        _ATTEMPTS[name] = "blocked:" + type(exc).__name__
    else:
        _ATTEMPTS[name] = "allowed:" + repr(result)[:200]
    try:
        with open("/out/attempts.json", "w") as f:
            _json.dump(_ATTEMPTS, f)
    except OSError:
        pass
"""


@dataclass
class CanaryRun:
    completed: Completed
    attempts: dict[str, str]
    out_dir: Path


def build_canary(root: Path, name: str, body: str) -> Path:
    """Write package ``name`` with ``body`` as its import-time code under ``root/pkg``."""
    pkg = root / "pkg" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PRELUDE + textwrap.dedent(body))
    return root / "pkg"


async def import_canary(
    tmp_path: Path,
    body: str,
    *,
    kind: StageKind = StageKind.STUBGEN,
    policy: StagePolicy | None = None,
    wall_clock: float | None = None,
    env: dict[str, str] | None = None,
    inputs: dict[str, Path] | None = None,
) -> CanaryRun:
    """Import a fresh canary inside ``kind``'s sandbox, the way the stubgen stage imports."""
    import json

    name = "canary_" + hashlib.sha256(body.encode()).hexdigest()[:8]
    pkg_root = build_canary(tmp_path, name, body)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [
        sys.executable, "-I", "-B", "-c",
        f"import sys; sys.path.insert(0, '/in/pkg'); import {name}",
    ]  # fmt: skip
    completed = await run(
        policy or POLICIES[kind],
        argv,
        inputs={"pkg": pkg_root, **(inputs or {})},
        output_dir=out_dir,
        wall_clock=wall_clock,
        env=env,
    )
    attempts_file = out_dir / "attempts.json"
    attempts = (
        json.loads(attempts_file.read_text())
        if attempts_file.is_file() and not attempts_file.is_symlink()
        else {}
    )
    return CanaryRun(completed, attempts, out_dir)


def tree_digest(root: Path) -> str:
    """A digest of every path, mode, size and content under ``root`` (links not followed)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            path = Path(dirpath, name)
            st = path.lstat()
            h.update(f"{path.relative_to(root)}|{st.st_mode:o}|{st.st_size}\n".encode())
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
    return h.hexdigest()


def all_blocked(attempts: dict[str, str], names: list[str]) -> None:
    missing = [n for n in names if n not in attempts]
    assert not missing, f"canary did not record {missing}: {attempts}"
    leaked = {n: attempts[n] for n in names if not attempts[n].startswith("blocked")}
    assert not leaked, f"attempts succeeded: {leaked}"
