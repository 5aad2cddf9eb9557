"""`lock` against the real index: cold (empty cache), warm (nothing changed) and incremental
(one direct dependency moved), for examples/hello and the ~50-package bench project; next to
what a user would otherwise run unsandboxed (uv pip compile --generate-hashes, downloading the
wheels, stubgen on the direct dependencies, compiling the wrappers); peak RSS of the kernel.

    .venv/bin/python bench/bench_lock.py [--runs N] [--project hello|fifty|both]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = {"hello": ROOT / "examples" / "hello", "fifty": ROOT / "bench" / "projects" / "fifty"}
PY = sys.executable
UV = str(Path(PY).with_name("uv"))

STUBGEN = (
    "import sys; sys.path.insert(0, {site!r}); from mypy.stubgen import main; "
    "main(['-p', {module!r}, '-o', '{out}', '--ignore-errors'])"
)
# Runs the CLI in this interpreter and prints the kernel process's own peak RSS (KiB) last.
RSS_WRAPPER = (
    "import resource, sys\n"
    "from mochi_pybridge.kernel.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('peak-rss-kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def lock(project: Path, cache: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [PY, "-c", RSS_WRAPPER, "--project", str(project), "--cache-dir", str(cache), "lock"],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"lock failed:\n{done.stderr[-3000:]}")
    rss = int(re.search(r"peak-rss-kib (\d+)", done.stderr).group(1))  # type: ignore[union-attr]
    runners = re.search(r"(\d+) runner\(s\) started", done.stderr)
    return elapsed, rss, runners.group(1) if runners else "?"


def copy_project(name: str, where: Path) -> Path:
    target = where / name
    shutil.copytree(
        PROJECTS[name],
        target,
        ignore=shutil.ignore_patterns(
            "mochi.lock", "pylock.toml", "python_wrap", ".mochi-pybridge.lock"
        ),
    )
    return target


def baseline(project: Path, work: Path) -> dict[str, float]:
    """The same work with the usual tools, unsandboxed, from empty caches."""
    from mochi_pybridge.kernel.lockfile import read_lock

    data = read_lock(project)
    assert data is not None
    times: dict[str, float] = {}
    work.mkdir(parents=True, exist_ok=True)
    reqs = work / "requirements.in"
    reqs.write_text("\n".join(f"{p.name}=={p.version}" for p in data.packages if p.direct) + "\n")
    env = {"UV_CACHE_DIR": str(work / "uv-cache"), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    start = time.perf_counter()
    subprocess.run(
        [
            UV,
            "pip",
            "compile",
            "--generate-hashes",
            "--only-binary",
            ":all:",
            "--no-config",
            "--quiet",
            str(reqs),
            "-o",
            str(work / "requirements.txt"),
        ],
        check=True,
        env=env,
    )
    times["uv pip compile --generate-hashes"] = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(
        [
            PY,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--quiet",
            "--no-cache-dir",
            "-d",
            str(work / "wheels"),
            "-r",
            str(work / "requirements.txt"),
        ],
        check=True,
        stderr=subprocess.DEVNULL,  # warnings about find-links in this machine's pip config
    )
    times["pip download (the locked wheels)"] = time.perf_counter() - start
    site = work / "site"
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            *[str(w) for w in sorted((work / "wheels").glob("*.whl"))],
        ],
        check=True,
        env=env,
    )
    start = time.perf_counter()
    for pkg in data.packages:
        if pkg.direct and pkg.module and pkg.extra.get("stub-provenance") == "stubgen":
            subprocess.run(
                [PY, "-c", STUBGEN.format(site=str(site), module=pkg.module, out=work / "stubs")],
                capture_output=True,
                check=False,
            )
    times["stubgen on the untyped direct deps"] = time.perf_counter() - start
    import sysconfig

    include = sysconfig.get_paths()["include"]
    start = time.perf_counter()
    for c_file in sorted((project / "python_wrap").glob("*/_mochi_*.c")):
        subprocess.run(
            [
                "cc",
                "-shared",
                "-fPIC",
                "-O2",
                f"-I{include}",
                str(c_file),
                "-o",
                str(work / (c_file.stem + ".so")),
            ],
            check=True,
        )
    times["cc on the wrappers"] = time.perf_counter() - start
    return times


def incremental_change(project: Path) -> None:
    """Move one direct dependency: pin it to its previous release."""
    manifest = project / "mochi.toml"
    text = manifest.read_text()
    old = 'toolz = "*"'
    assert old in text, "the bench projects depend on toolz"
    manifest.write_text(text.replace(old, 'toolz = "<1.2"'))


def summarise(samples: list[float]) -> str:
    med = statistics.median(samples)
    return f"{med:.2f} ({min(samples):.2f}-{max(samples):.2f})"


def bench_project(name: str, runs: int) -> dict[str, object]:
    results: dict[str, object] = {}
    cold, warm, incr, rss = [], [], [], []
    base: dict[str, float] = {}
    runners_warm = "?"
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="mochi-bench-") as tmp:
            where = Path(tmp)
            project = copy_project(name, where)
            cache = where / "cache"
            t, r, _ = lock(project, cache)
            cold.append(t)
            rss.append(r)
            for _ in range(3):
                t, _, runners_warm = lock(project, cache)
                warm.append(t)
            incremental_change(project)
            t, _, _ = lock(project, cache)
            incr.append(t)
            if i == 0:
                base = baseline(project, where / "baseline")
    base_total = sum(base.values())
    results.update(
        {
            "cold_s": cold,
            "warm_s": warm,
            "incremental_s": incr,
            "peak_rss_kib": rss,
            "runners_on_warm": runners_warm,
            "baseline_total_s": base_total,
        }
    )
    rows = [
        [
            "cold lock (empty cache)",
            summarise(cold),
            f"{statistics.median(cold) / base_total:.2f}x baseline",
        ],
        ["warm lock (nothing changed)", summarise(warm), f"{runners_warm} runners started"],
        ["incremental (toolz moved)", summarise(incr), ""],
        ["kernel peak RSS (cold)", f"{statistics.median(rss) / 1024:.0f} MiB", ""],
    ]
    for label, seconds in base.items():
        rows.append([f"baseline: {label}", f"{seconds:.2f}", ""])
    rows.append(["baseline total", f"{base_total:.2f}", ""])
    print_table(
        f"lock of {name} (seconds: median (min-max) of {runs} cold, {3 * runs} warm runs)",
        ["what", "time", "note"],
        rows,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--project", choices=["hello", "fifty", "both"], default="both")
    args = parser.parse_args()
    names = ["hello", "fifty"] if args.project == "both" else [args.project]
    results = {name: bench_project(name, args.runs) for name in names}
    write_json("lock", results)
    print(
        json.dumps(
            {n: {k: v for k, v in r.items() if k.endswith("total_s")} for n, r in results.items()}
        )
    )


if __name__ == "__main__":
    main()
