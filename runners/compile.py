"""The compile runner: the generated wrapper C → ``_mochi_NAME.abi3.so``, in the compile
sandbox (no network; only the generated source, the Python headers and the toolchain are
visible). The flags come from the kernel's request, never from the package.

    python -I -B -m mochi_pybridge.runners.compile --protocol-fd N
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import RunnerFailure, serve_one
from mochi_pybridge.runners.channel import RunnerChannel

TIMEOUT = 240


def compile_wrapper(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    p = request.params
    source = Path(p["source"])
    output = Path(p["out"]) / str(p["output_name"])
    argv = [
        str(p["cc"]),
        *[str(f) for f in p["flags"]],
        f"-I{p['include']}",
        str(source),
        "-o",
        str(output),
    ]
    channel.progress(request.id, f"compiling {source.name}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RunnerFailure("failed", f"the C compiler failed:\n{done.stderr[-3000:]}")
    return {"size": output.stat().st_size, "warnings": done.stderr[-2000:]}


def compile_many(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    """Several wrappers in one stage, with the same compiler and flags; each failure is
    reported and the kernel redoes that one alone."""
    p = request.params
    out = Path(p["out"])
    results = []
    for index, item in enumerate(p["items"]):
        source = Path(item["source"])
        channel.progress(request.id, f"compiling {source.name}", index, len(p["items"]))
        argv = [
            str(p["cc"]),
            *[str(f) for f in p["flags"]],
            f"-I{p['include']}",
            str(source),
            "-o",
            str(out / str(item["output_name"])),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        results.append({"ok": done.returncode == 0, "stderr": done.stderr[-2000:]})
    return {"results": results}


def main() -> int:
    return serve_one({"compile": compile_wrapper, "compile_many": compile_many})


if __name__ == "__main__":
    raise SystemExit(main())
