"""Cost of starting a stage inside each sandbox policy versus the same command unsandboxed.

Each figure is start-to-exit wall time through ``sandbox.launch.run`` (seccomp export, bind
descriptors, cgroup, rlimits, bwrap, exec, reap), median of RUNS runs, with min and max.

    .venv/bin/python bench/bench_sandbox.py
"""

from __future__ import annotations

import statistics
import sys
import time

import trio
from table import print_table, write_json

from mochi_pybridge.sandbox.launch import run
from mochi_pybridge.sandbox.policy import POLICIES

RUNS = 30
COMMANDS = {
    "/usr/bin/true": ["/usr/bin/true"],
    "python -I -c pass": [sys.executable, "-I", "-c", "pass"],
}


async def timed(policy_kind: object, argv: list[str], unsafe: bool) -> list[float]:
    policy = POLICIES[policy_kind]  # type: ignore[index]
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        done = await run(policy, argv, unsafe_no_sandbox=unsafe)
        samples.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
    return samples


async def main() -> None:
    rows = []
    results = {}
    for command, argv in COMMANDS.items():
        for kind in POLICIES:
            plain = await timed(kind, argv, unsafe=True)
            boxed = await timed(kind, argv, unsafe=False)
            p, b = statistics.median(plain), statistics.median(boxed)
            rows.append(
                [command, kind.value, f"{p * 1e3:.1f}", f"{b * 1e3:.1f}",
                 f"{min(boxed) * 1e3:.1f}-{max(boxed) * 1e3:.1f}", f"{(b - p) * 1e3:.1f}",
                 f"{b / p:.2f}x"]
            )  # fmt: skip
            results[f"{command}/{kind.value}"] = {"plain_s": plain, "sandboxed_s": boxed}
    print_table(
        f"stage start-to-exit, median of {RUNS} runs (ms)",
        ["command", "policy", "plain", "sandboxed", "sandboxed range", "overhead", "ratio"],
        rows,
    )
    write_json("sandbox", results)


if __name__ == "__main__":
    trio.run(main)
