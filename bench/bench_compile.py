"""Wrapper compile throughput: the generated C of a real binding (examples' lying test
package, 14 entries) compiled in the compile sandbox N times with --jobs 1 and 2, and the
same compiles run unsandboxed, for the ratio.

    .venv/bin/python bench/bench_compile.py
"""

from __future__ import annotations

import statistics
import tempfile
import textwrap
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
from table import print_table, write_json

from mochi_pybridge.kernel.graph import Outcome, StageSpec, run_graph
from mochi_pybridge.kernel.lifecycle import StageId, run_stage, runner_argv
from mochi_pybridge.runners.bindings.emit import render_all
from mochi_pybridge.runners.bindings.stubmodel import StubTree
from mochi_pybridge.runners.bindings.synthesize import Options, synthesize
from mochi_pybridge.sandbox.policy import POLICIES, StageKind

SOURCE = """
from typing import Optional
def add(a: int, b: int) -> int: ...
def names(n: int) -> list[str]: ...
def table(k: str) -> dict[str, list[int]]: ...
def maybe(flag: bool) -> Optional[str]: ...
class Counter:
    def __init__(self, start: int) -> None: ...
    def bump(self, by: int = 1) -> int: ...
"""
N = 8


async def compile_all(src: Path, jobs: int, unsafe: bool) -> float:
    import sysconfig

    from mochi_pybridge.kernel.bindings import CC, CFLAGS

    specs = [StageSpec(f"c{i}", "compile", f"w{i}") for i in range(N)]

    async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> Any:
        out = src.parent / f"out-{uuid.uuid4().hex}"
        out.mkdir()
        return await run_stage(
            StageId("compile", spec.package), POLICIES[StageKind.COMPILE],
            runner_argv("mochi_pybridge.runners.compile"), "compile",
            {"source": "{in:src}/_mochi_bench.c", "output_name": "_mochi_bench.abi3.so", "cc": CC,
             "flags": list(CFLAGS), "include": sysconfig.get_paths()["include"], "out": "{out}"},
            inputs={"src": src}, output_dir=out, unsafe_no_sandbox=unsafe,
        )  # fmt: skip

    start = time.perf_counter()
    run = await run_graph(specs, execute, jobs=jobs)
    assert not run.failed, [run.outcomes[k].error for k in run.failed]
    return N / (time.perf_counter() - start)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mochi-compile-") as tmp:
        root = Path(tmp)
        (root / "pkg" / "bench").mkdir(parents=True)
        (root / "pkg" / "bench" / "__init__.pyi").write_text(textwrap.dedent(SOURCE))
        plan = synthesize(StubTree([root / "pkg"]), "bench", "bench", Options())
        src = root / "src"
        src.mkdir()
        (src / "_mochi_bench.c").write_text(render_all(plan, "bench", "1.0").c_source)
        rows, results = [], {}
        for unsafe in (True, False):
            for jobs in (1, 2):
                samples = [await compile_all(src, jobs, unsafe) for _ in range(3)]
                label = "unsandboxed" if unsafe else "sandboxed"
                results[f"{label}_jobs{jobs}"] = samples
                rows.append([label, str(jobs), f"{statistics.median(samples):.2f}",
                             f"{min(samples):.2f}-{max(samples):.2f}"])  # fmt: skip
    print_table(f"wrapper compiles per second ({N} compiles of a 7-entry wrapper, 3 runs)",
                ["mode", "--jobs", "median", "range"], rows)  # fmt: skip
    write_json("compile", results)


if __name__ == "__main__":
    trio.run(main)
