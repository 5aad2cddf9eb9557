"""The unpack runner: a wheel becomes a site directory through the hardened unpacker, inside
the synthesis sandbox (no network, the wheel read-only), and the package's capabilities are
read from the unpacked code in the same stage. The kernel then checks the tree
(intake) and moves it, read-only, into the content-addressed site cache.

    python -I -B -m mochi_pybridge.runners.unpack --protocol-fd N
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mochi_pybridge.kernel.errors import PybridgeError
from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import RunnerFailure, serve_one
from mochi_pybridge.runners.bindings.capabilities import analyse
from mochi_pybridge.runners.channel import RunnerChannel
from mochi_pybridge.sandbox.unpack import unpack_wheel


def unpack(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    wheel = Path(request.params["wheel"])
    target = Path(request.params["out"]) / "site"
    target.mkdir()
    channel.progress(request.id, f"unpacking {wheel.name}")
    try:
        names = unpack_wheel(wheel, target)
    except PybridgeError as exc:
        raise RunnerFailure("integrity", exc.diagnostics()) from None
    top_level = [str(t) for t in request.params.get("top_level", [])]
    channel.progress(request.id, "analysing capabilities")
    return {"files": len(names), "capabilities": analyse(target, top_level)}


def main() -> int:
    return serve_one({"unpack": unpack})


if __name__ == "__main__":
    raise SystemExit(main())
