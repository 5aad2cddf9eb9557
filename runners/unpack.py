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


def _unpack_one(wheel: Path, target: Path, top_level: list[str]) -> Mapping[str, Any]:
    target.mkdir(parents=True)
    try:
        names = unpack_wheel(wheel, target)
    except PybridgeError as exc:
        raise RunnerFailure("integrity", exc.diagnostics()) from None
    return {"files": len(names), "capabilities": analyse(target, top_level)}


def unpack(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    wheel = Path(request.params["wheel"])
    channel.progress(request.id, f"unpacking {wheel.name}")
    top_level = [str(t) for t in request.params.get("top_level", [])]
    return _unpack_one(wheel, Path(request.params["out"]) / "site", top_level)


def unpack_many(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    """Several wheels in one stage: ``/out/N/site`` for item N. A failed item is reported,
    and the kernel redoes it alone."""
    out = Path(request.params["out"])
    results: list[Mapping[str, Any]] = []
    for index, item in enumerate(request.params["items"]):
        wheel = Path(item["wheel"])
        channel.progress(request.id, f"unpacking {wheel.name}", index, len(request.params["items"]))
        try:
            top_level = [str(t) for t in item.get("top_level", [])]
            results.append({"ok": True, **_unpack_one(wheel, out / str(index) / "site", top_level)})
        except RunnerFailure as exc:
            results.append({"ok": False, "code": exc.code, "message": exc.message[:2000]})
    return {"results": results}


def main() -> int:
    return serve_one({"unpack": unpack, "unpack_many": unpack_many})


if __name__ == "__main__":
    raise SystemExit(main())
