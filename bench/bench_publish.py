"""`publish --dry-run` with signing, against the local Sigstore test backend (the public
services cannot be reached from here): end to end, and the sandboxed sign stage alone (TLS
through the egress proxy, one Fulcio certificate, a Rekor entry and a timestamp per file).
Needs Node.js and the backend's npm packages (`.ci/test` installs them).

    .venv/bin/python bench/bench_publish.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import print_table, summary, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kernel.test_publish import publish_project  # noqa: E402
from tests.support.sigstore import github_token, sigstore_backend  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    total, sign = [], []
    with tempfile.TemporaryDirectory() as tmp, sigstore_backend(Path(tmp) / "backend") as backend:
        for run in range(args.runs):
            project = publish_project(Path(tmp) / str(run))
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "mochi_pybridge", "--json", "--project", str(project),
                 "--cache-dir", str(Path(tmp) / "cache"), "publish", "--dry-run",
                 "--trust-config", str(backend.trust_config), "--identity-token", github_token()],
                capture_output=True, text=True, check=False,
                env={"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(backend.ca_bundle)},
            )  # fmt: skip
            total.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"publish failed:\n{done.stderr[-3000:]}")
            events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            sign += [e["elapsed"] for e in events if e["stage"] == "sign" and e["kind"] == "finish"]
    rows = []
    for label, samples in (("publish --dry-run, end to end", total), ("sign stage", sign)):
        s = summary(samples)
        rows.append([label, f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"])
    print_table(
        f"signing two distributions against the local Sigstore test backend ({args.runs} runs, s)",
        ["what", "median (min-max)"],
        rows,
    )
    write_json("publish", {"total_s": total, "sign_stage_s": sign})


if __name__ == "__main__":
    main()
