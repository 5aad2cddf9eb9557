"""Run the protocol fuzzer for a bounded time; exit non-zero on any finding.

Uses atheris (coverage-guided) when it is installed, otherwise a hypothesis-driven harness
with the same invariant. CI runs this for a minute; longer runs are for developers:

    .venv/bin/python fuzz/fuzz_bounded.py --seconds 600
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_atheris(seconds: int) -> int:
    with tempfile.TemporaryDirectory(prefix="mochi-fuzz-") as corpus:
        argv = [
            sys.executable,
            str(HERE / "fuzz_protocol.py"),
            corpus,
            str(HERE / "seeds"),
            f"-max_total_time={seconds}",
            "-rss_limit_mb=1024",
            "-print_final_stats=1",
            f"-artifact_prefix={corpus}/",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    stats = [ln for ln in proc.stderr.splitlines() if ln.startswith("stat::")]
    print("\n".join(stats))
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
    return proc.returncode


def run_hypothesis(seconds: int) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sys.path.insert(0, str(HERE))
    from fuzz_harness_core import test_one_input

    deadline = time.monotonic() + seconds
    count = 0

    @settings(max_examples=10**9, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048))
    def fuzz(data: bytes) -> None:
        nonlocal count
        count += 1
        test_one_input(data)
        if time.monotonic() > deadline:
            raise TimeoutError

    with contextlib.suppress(TimeoutError):
        fuzz()
    print(f"stat::number_of_executed_units: {count}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    if importlib.util.find_spec("atheris") is not None:
        return run_atheris(args.seconds)
    return run_hypothesis(args.seconds)


if __name__ == "__main__":
    raise SystemExit(main())
