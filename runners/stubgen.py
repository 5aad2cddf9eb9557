"""The stubgen runner: mypy's stubgen over an untyped package, in the stubgen sandbox.

stubgen imports the package (even without --inspect-mode), so this is where hostile code runs:
no network, inputs read-only, one output directory. The import runs in a child process that
does not inherit the protocol descriptor. An import that tries the network is reported as
SkipImportTimeNetwork, one that raises as SkipImportTimeError; stubgen failing on one module
skips that module, not the package.

    python -I -B -m mochi_pybridge.runners.stubgen --protocol-fd N
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import RunnerFailure, serve_one
from mochi_pybridge.runners.channel import RunnerChannel

TIMEOUT = 90
_NETWORK_ERRORS = re.compile(
    r"(Address family not supported|Network is unreachable|Temporary failure in name resolution|"
    r"Name or service not known|gaierror|ConnectionRefusedError|EAFNOSUPPORT|ENETUNREACH)"
)


def _stubgen(
    module: str, paths: list[str], out: Path, inspect: bool, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    args = ["-p", module, "-o", str(out), "--export-less", "--ignore-errors"]
    if inspect:
        args.append("--inspect-mode")
    # -I ignores PYTHONPATH, so the child puts the package's sites on sys.path itself. The
    # child inherits no protocol descriptor (close_fds is the default).
    code = (
        f"import sys; sys.path[:0] = {paths!r}; from mypy.stubgen import main; main(sys.argv[1:])"
    )
    argv = [sys.executable, "-I", "-c", code, *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


def _import_failure(module: str, paths: list[str], env: dict[str, str]) -> str:
    """stubgen only says "Failed to import": import once more to see why."""
    code = f"import sys; sys.path[:0] = {paths!r}; import {module}"
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "\nimport timed out"
    return "\n" + done.stderr[-2000:]


def stubgen(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    params = request.params
    module = str(params["module"])
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
        raise RunnerFailure("invalid-params", f"not a module name: {module!r:.100}")
    paths = [str(p) for p in params["paths"]]
    out = Path(params["out"]) / "stubs"
    out.mkdir()
    env = {**os.environ, "MYPY_CACHE_DIR": "/tmp/mypy-cache"}
    # Static analysis sees pure-Python APIs best (star imports and all); inspect mode is for
    # what it cannot see, native extensions. Either way the package is imported.
    if not params.get("inspect_mode", True):
        attempts = [False]
    elif params.get("native"):
        attempts = [True, False]
    else:
        attempts = [False, True]
    last: subprocess.CompletedProcess[str] | None = None
    for inspect in attempts:
        channel.progress(
            request.id, f"stubgen {module} ({'inspect' if inspect else 'static'} mode)"
        )
        try:
            last = _stubgen(module, paths, out, inspect, env)
        except subprocess.TimeoutExpired:
            raise RunnerFailure(
                "failed",
                f"stubgen of {module} exceeded {TIMEOUT} s",
                {"skip": "SkipImportTimeError"},
            ) from None
        if last.returncode == 0 and any(out.rglob("*.pyi")):
            return {"mode": "inspect" if inspect else "static", "log": last.stderr[-2000:]}
    assert last is not None
    text = (last.stderr + last.stdout)[-4000:] + _import_failure(module, paths, env)
    token = "SkipImportTimeNetwork" if _NETWORK_ERRORS.search(text) else "SkipImportTimeError"
    raise RunnerFailure(
        "failed", f"stubgen could not import {module}: {text[-1500:]}", {"skip": token}
    )


def main() -> int:
    return serve_one({"stubgen": stubgen})


if __name__ == "__main__":
    raise SystemExit(main())
