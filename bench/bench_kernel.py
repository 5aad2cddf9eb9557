"""Kernel figures: a runner's start-to-hello latency (sandboxed and not), stage throughput
with --jobs 1 and 2, and protocol round trips with a live runner.

    .venv/bin/python bench/bench_kernel.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import trio
from table import print_table, write_json

from mochi_pybridge.kernel.channel import TrioChannel
from mochi_pybridge.kernel.graph import Outcome, StageSpec, run_graph
from mochi_pybridge.kernel.lifecycle import StageId, run_stage, runner_argv
from mochi_pybridge.protocol import Connection, Goodbye, Hello, Role
from mochi_pybridge.sandbox.launch import launch
from mochi_pybridge.sandbox.policy import POLICIES, StageKind

RUNNER = "mochi_pybridge.runners.unpack"  # a real runner with few imports
ECHO = [sys.executable, "-I", "-B", "-c",
        "import sys\nfrom mochi_pybridge.runners.base import serve_one\n"
        "serve_one({'echo': lambda r, c: dict(r.params)}, sys.argv[1:])",
        "--protocol-fd", "{protocol_fd}"]  # fmt: skip


async def start_to_hello(unsafe: bool) -> float:
    start = time.perf_counter()
    async with launch(POLICIES[StageKind.SYNTHESIS], list(runner_argv(RUNNER)), with_protocol=True,
                      unsafe_no_sandbox=unsafe) as stage:  # fmt: skip
        assert stage.protocol is not None
        conn = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="bench")
        channel = TrioChannel(stage.protocol, stage.protocol, conn)
        await channel.send(Hello(role=Role.KERNEL, software="bench"))
        hello = await channel.receive()
        elapsed = time.perf_counter() - start
        assert isinstance(hello, Hello)
        await channel.send(Goodbye())
        await stage.process.wait()
    return elapsed


async def start_to_result(kind: StageKind, unsafe: bool) -> float:
    """One trivial request through the whole stage lifecycle under ``kind``'s policy."""
    start = time.perf_counter()
    value = await run_stage(StageId("echo", kind.value), POLICIES[kind], ECHO, "echo", {"n": 1},
                            unsafe_no_sandbox=unsafe)  # fmt: skip
    assert value == {"n": 1}
    return time.perf_counter() - start


async def throughput(jobs: int, stages: int) -> float:
    specs = [StageSpec(f"s{i}", "echo", f"p{i}") for i in range(stages)]

    async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> Any:
        return await run_stage(StageId("echo", spec.package), POLICIES[StageKind.SYNTHESIS], ECHO,
                               "echo", {"n": spec.key})  # fmt: skip

    start = time.perf_counter()
    run = await run_graph(specs, execute, jobs=jobs)
    assert not run.failed
    return stages / (time.perf_counter() - start)


async def main() -> None:
    rows = []
    results: dict[str, object] = {}
    for unsafe in (True, False):
        samples = [await start_to_hello(unsafe) for _ in range(25)]
        label = "unsandboxed" if unsafe else "sandboxed (bwrap + seccomp + limits)"
        results[f"start_to_hello_{'plain' if unsafe else 'sandboxed'}_s"] = samples
        rows.append([label, f"{statistics.median(samples) * 1e3:.1f}",
                     f"{min(samples) * 1e3:.1f}-{max(samples) * 1e3:.1f}"])  # fmt: skip
    print_table("runner start-to-hello latency, 25 runs (ms)", ["runner", "median", "range"], rows)
    rows = []
    for kind in StageKind:
        plain = [await start_to_result(kind, True) for _ in range(15)]
        boxed = [await start_to_result(kind, False) for _ in range(15)]
        results[f"start_to_result_{kind.value}"] = {"plain_s": plain, "sandboxed_s": boxed}
        p, b = statistics.median(plain), statistics.median(boxed)
        spread = f"{min(boxed) * 1e3:.1f}-{max(boxed) * 1e3:.1f}"
        rows.append(
            [kind.value, f"{p * 1e3:.1f}", f"{b * 1e3:.1f}", spread, f"{(b - p) * 1e3:.1f}"]
        )
    print_table(
        "trivial request start-to-result per stage policy, 15 runs (ms)",
        ["policy", "unsandboxed", "sandboxed", "sandboxed range", "overhead"],
        rows,
    )
    rows = []
    for jobs in (1, 2):
        samples = [await throughput(jobs, 16) for _ in range(3)]
        results[f"stages_per_s_jobs{jobs}"] = samples
        rows.append(
            [
                str(jobs),
                f"{statistics.median(samples):.1f}",
                f"{min(samples):.1f}-{max(samples):.1f}",
            ]
        )
    print_table("sandboxed stage throughput (16 echo stages, 3 runs; stages/s)",
                ["--jobs", "median", "range"], rows)  # fmt: skip
    write_json("kernel", results)


if __name__ == "__main__":
    trio.run(main)
