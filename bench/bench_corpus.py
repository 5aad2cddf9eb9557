"""The bindings corpus: lock bench/projects/corpus (from an empty cache) and tabulate, per
direct dependency, its stub tier, the items mapped, the items skipped by reason, and the time
of each of its stages (from the --json event stream).

    .venv/bin/python bench/bench_corpus.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from table import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bench" / "projects" / "corpus"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mochi-corpus-") as tmp:
        project = Path(tmp) / "corpus"
        shutil.copytree(CORPUS, project)
        done = subprocess.run(
            [sys.executable, "-m", "mochi_pybridge", "--json", "--project", str(project),
             "--cache-dir", str(Path(tmp) / "cache"), "lock"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(
                f"the corpus lock failed (a package crashed the pipeline?):\n{done.stderr[-3000:]}"
            )
        times: dict[str, dict[str, float]] = defaultdict(dict)
        for line in done.stdout.splitlines():
            event = json.loads(line)
            if event["kind"] == "finish":
                times[event["package"]][event["stage"]] = event["elapsed"]
        from mochi_pybridge.kernel.lockfile import read_lock

        lock = read_lock(project)
        assert lock is not None
        rows, results = [], {}
        for pkg in sorted(
            (p for p in lock.packages if "stub-provenance" in p.extra), key=lambda p: p.name
        ):
            wrap = next(
                (project / "python_wrap").glob(
                    f"*/{(pkg.module or '').replace('.', '_')}_shim.mochi"
                )
            )
            shim = wrap.read_text()
            mapped = len(re.findall(r"^(extern (fun|var|type)|type) ", shim, re.MULTILINE))
            skipped = Counter(
                re.findall(
                    r"^reason: (\w+)$", (wrap.parent / "SKIPPED.txt").read_text(), re.MULTILINE
                )
            )
            stage_times = times.get(pkg.name, {})
            rows.append([
                pkg.name, pkg.extra["stub-provenance"], str(mapped), str(sum(skipped.values())),
                ", ".join(f"{k.removeprefix('Skip')} {v}" for k, v in skipped.most_common(3)),
                ", ".join(f"{k} {v:.1f}" for k, v in sorted(stage_times.items())),
            ])  # fmt: skip
            results[pkg.name] = {"tier": pkg.extra["stub-provenance"], "mapped": mapped,
                                 "skipped": dict(skipped), "stage_s": stage_times,
                                 "capabilities": pkg.extra.get("capabilities", [])}  # fmt: skip
        print_table(
            f"bindings corpus ({len(rows)} direct dependencies, {len(lock.packages)} locked)",
            ["package", "tier", "mapped", "skipped", "top skip reasons", "stage seconds"],
            rows,
        )
        write_json("corpus", results)


if __name__ == "__main__":
    main()
