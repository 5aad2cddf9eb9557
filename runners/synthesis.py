"""The synthesis runner: stubs → binding plan → shim, sidecar, wrapper C and SKIPPED.txt; and
the capability analysis of a package's code. Stub and source files may be hostile (huge,
deeply nested), so they are parsed here, in the synthesis sandbox, never in the kernel.

    python -I -B -m mochi_pybridge.runners.synthesis --protocol-fd N
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import serve_one
from mochi_pybridge.runners.bindings.capabilities import analyse
from mochi_pybridge.runners.bindings.emit import render_all
from mochi_pybridge.runners.bindings.stubmodel import StubTree
from mochi_pybridge.runners.bindings.synthesize import Options, Plan, SkipPlan, synthesize
from mochi_pybridge.runners.channel import RunnerChannel


def synthesis(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    return _synthesize_one(request, channel, request.params, Path(request.params["out"]))


def synthesis_many(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    """Several ``synthesize`` requests in one runner (one sandbox start for a batch); item N
    writes into ``out/N/``. The first failure fails the batch: the kernel then redoes its
    items one at a time, so the error names the package."""
    out = Path(request.params["out"])
    summaries = []
    for index, item in enumerate(request.params["items"]):
        (out / str(index)).mkdir()
        summaries.append(_synthesize_one(request, channel, item, out / str(index)))
    return {"summaries": summaries}


def _synthesize_one(
    request: Request, channel: RunnerChannel, p: Mapping[str, Any], out: Path
) -> Mapping[str, Any]:
    module, alias = str(p["module"]), str(p["alias"])
    roots = [Path(r) for r in p["stub_roots"]]
    tree = StubTree(roots, stub_suffix=str(p.get("stub_suffix", "")))
    channel.progress(request.id, f"mapping {module} through the type table")
    options = Options(
        int_mode=str(p.get("int_mode", "int64")), allow_partial=bool(p.get("allow_partial"))
    )
    refuse = p.get("refuse")
    if refuse:  # the kernel already knows the package cannot be bound (trio, stubgen failed)
        plan = Plan(module=module, alias=alias)
        plan.skipped.append(SkipPlan(module, str(refuse["token"]), str(refuse["detail"])[:2000]))
    else:
        plan = synthesize(tree, module, alias, options)

    outputs = render_all(
        plan,
        str(p["package"]),
        str(p["version"]),
        strict_returns=bool(p.get("strict_returns", True)),
        async_mode=str(p.get("async_mode", "per-call")),
    )
    name = module.replace(".", "_")
    (out / f"{name}_shim.mochi").write_text(outputs.shim)
    (out / f"{name}_externs.py").write_text(outputs.sidecar)
    (out / f"{name}_externs.pyi").write_text(outputs.sidecar_stub)
    (out / f"_mochi_{name}.c").write_text(outputs.c_source)
    (out / "SKIPPED.txt").write_text(outputs.skipped)
    counts: dict[str, int] = {}
    for skip in plan.skipped:
        counts[skip.token] = counts.get(skip.token, 0) + 1
    summary = {
        "functions": len(plan.functions),
        "variables": len(plan.variables),
        "types": len(plan.opaques) + len(plan.records),
        "skipped": len(plan.skipped),
        "skipped_by_reason": counts,
    }
    (out / "summary.json").write_text(json.dumps(summary, sort_keys=True))
    return summary


def capabilities(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    site = Path(request.params["site"])
    top_level = [str(t) for t in request.params["top_level"]]
    return {"capabilities": analyse(site, top_level)}


def main() -> int:
    return serve_one(
        {
            "synthesize": synthesis,
            "synthesize_many": synthesis_many,
            "capabilities": capabilities,
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
