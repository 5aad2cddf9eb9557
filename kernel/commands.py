"""The pipeline commands of SPEC §2: lock (--check, --dry-run), add, update, sync, export."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio
from packaging.requirements import InvalidRequirement, Requirement

from mochi_pybridge import __version__
from mochi_pybridge.kernel.errors import ExitCode, PybridgeError
from mochi_pybridge.kernel.events import EventSink, make_sink
from mochi_pybridge.kernel.lockfile import (
    LOCK_NAME,
    PYLOCK_NAME,
    LockData,
    diff_locks,
    read_lock,
    render_lock,
    render_pylock,
)
from mochi_pybridge.kernel.manifest import ManifestError, load_manifest
from mochi_pybridge.kernel.pipeline import Pipeline
from mochi_pybridge.kernel.projectlock import project_lock
from mochi_pybridge.kernel.store import atomic_write


@dataclass
class LockReport:
    data: LockData | None
    wrote: bool
    drift: list[str]
    seconds: float
    runners_started: int
    cache_hits: int
    pipeline: Pipeline  # for commands that read more of what the run found (`stubs`)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet and not args.json:
        print(text, file=sys.stderr)


def write_outputs(project: Path, data: LockData) -> None:
    """pylock.toml first, mochi.lock last: mochi.lock is the commit point."""
    atomic_write(
        project / PYLOCK_NAME, render_pylock(data, f"mochi-pybridge {__version__}").encode()
    )
    atomic_write(project / LOCK_NAME, render_lock(data).encode())


async def run_lock(
    args: argparse.Namespace,
    sink: EventSink,
    *,
    check: bool = False,
    dry_run: bool = False,
    upgrade: Sequence[str] = (),
    upgrade_all: bool = False,
    guard: Callable[[LockData | None, LockData], None] | None = None,
    write_wrappers: bool = False,
) -> LockReport:
    project: Path = args.project.resolve()
    started = time.monotonic()
    manifest = load_manifest(project)
    pipeline = Pipeline(
        manifest, args.cache_dir, sink, jobs=args.jobs, unsafe_no_sandbox=args.unsafe_no_sandbox
    )
    async with project_lock(project, wait=not getattr(args, "no_wait", False)):
        data = await pipeline.compute(upgrade=upgrade, upgrade_all=upgrade_all, dry_run=dry_run)
        drift: list[str] = []
        wrote = False
        if data is not None:
            old = read_lock(project)
            if guard is not None:
                guard(old, data)
            if old is None:
                drift = ["no mochi.lock yet"]
            elif render_lock(old) != render_lock(data):
                drift = diff_locks(old, data) or ["mochi.lock is not in canonical form"]
            if not check or (write_wrappers and not drift):
                from mochi_pybridge.kernel.bindings import write_python_wrap

                write_python_wrap(project, pipeline.wrappers)
                if drift or not (project / PYLOCK_NAME).exists():
                    write_outputs(project, data)
                    wrote = True
    return LockReport(
        data,
        wrote,
        drift,
        time.monotonic() - started,
        pipeline.stats.runners_started,
        pipeline.stats.cache_hits,
        pipeline,
    )


def _run(args: argparse.Namespace, **kwargs: object) -> LockReport:
    sink = make_sink(as_json=args.json, verbose=bool(args.verbose))
    try:
        return trio.run(lambda: run_lock(args, sink, **kwargs))  # type: ignore[arg-type]
    finally:
        sink.close()


def cmd_lock(args: argparse.Namespace) -> int:
    report = _run(args, check=args.check, dry_run=args.dry_run)
    if args.dry_run:
        _say(args, "dry run: nothing was written")
        return int(ExitCode.OK)
    assert report.data is not None
    if args.check:
        if report.drift:
            print("mochi.lock is out of date:", file=sys.stderr)
            for line in report.drift:
                print(f"  {line}", file=sys.stderr)
            return int(ExitCode.LOCK_DRIFT)
        _say(args, f"mochi.lock is up to date ({len(report.data.packages)} packages)")
        return int(ExitCode.OK)
    direct = sum(p.direct for p in report.data.packages)
    state = "wrote mochi.lock and pylock.toml" if report.wrote else "mochi.lock unchanged"
    _say(
        args,
        f"locked {len(report.data.packages)} packages ({direct} direct) in "
        f"{report.seconds:.2f}s; {state}; {report.runners_started} runner(s) started, "
        f"{report.cache_hits} cached",
    )
    return int(ExitCode.OK)


def capability_guard(allow: bool) -> Callable[[LockData | None, LockData], None]:
    """Refuse (exit 5) a lock in which a package gained a capability, unless allowed."""

    def guard(old: LockData | None, new: LockData) -> None:
        if old is None or allow:
            return
        before = {p.name: set(p.extra.get("capabilities", [])) for p in old.packages}
        gained = []
        for pkg in new.packages:
            if pkg.name in before:
                added = set(pkg.extra.get("capabilities", [])) - before[pkg.name]
                gained += [f"{pkg.name} {pkg.version} gains `{cap}`" for cap in sorted(added)]
        if gained:
            raise CapabilityElevation(
                "the update would elevate capabilities: "
                + "; ".join(gained)
                + ". Review the packages, then rerun with --allow-capability-elevation. "
                "Nothing was written."
            )

    return guard


class CapabilityElevation(PybridgeError):
    exit_code = ExitCode.CAPABILITY_ELEVATION


def cmd_update(args: argparse.Namespace) -> int:
    project = args.project.resolve()
    old = read_lock(project)
    report = _run(
        args,
        upgrade=args.names,
        upgrade_all=not args.names,
        guard=capability_guard(args.allow_capability_elevation),
    )
    assert report.data is not None
    before = {p.name: p.version for p in (old.packages if old else ())}
    changes = [
        f"{p.name} {before.get(p.name, '(new)')} -> {p.version}"
        for p in report.data.packages
        if before.get(p.name) != p.version
    ]
    _say(
        args,
        "\n".join(changes) if changes else "everything is already at the newest allowed version",
    )
    return int(ExitCode.OK)


def require_lock(project: Path) -> LockData:
    data = read_lock(project)
    if data is None:
        raise PybridgeError(
            f"{project / LOCK_NAME} does not exist; run `mochi-pybridge lock` first"
        )
    return data


def cmd_export(args: argparse.Namespace) -> int:
    project = args.project.resolve()
    data = require_lock(project)
    atomic_write(
        project / PYLOCK_NAME, render_pylock(data, f"mochi-pybridge {__version__}").encode()
    )
    _say(args, f"wrote {project / PYLOCK_NAME}")
    return int(ExitCode.OK)


def cmd_sync(args: argparse.Namespace) -> int:
    """Check every locked wheel is in the store (verified), fetching by hash what is missing."""
    project = args.project.resolve()
    data = require_lock(project)
    report = _run(args, check=True, write_wrappers=True)
    assert report.data is not None
    if report.drift:
        raise PybridgeError(
            "mochi.lock does not match what mochi.toml resolves to; run `mochi-pybridge lock`:\n  "
            + "\n  ".join(report.drift)
        )
    _say(
        args,
        f"python_wrap/ rebuilt from mochi.lock ({len(data.packages)} packages, "
        f"{report.runners_started} runner(s) started)",
    )
    return int(ExitCode.OK)


def add_to_manifest(project: Path, spec: str, extra_names: Sequence[str] = ()) -> None:
    """Add or update one [python-dependencies] entry, keeping comments and layout."""
    import tomlkit  # only `add` needs it (~0.08 s to import)

    path = project / "mochi.toml"
    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        raise ManifestError(
            f"{spec!r} is not a requirement like 'requests>=2.31' ({exc})"
        ) from None
    original = path.read_text()
    doc = tomlkit.parse(original)
    deps = doc.get("python-dependencies")
    if deps is None:
        deps = tomlkit.table()
        doc["python-dependencies"] = deps
    extras = sorted({*requirement.extras, *(e for e in extra_names if e)})
    version = str(requirement.specifier) or "*"
    existing = next(
        (k for k in deps if Requirement(k).name.lower() == requirement.name.lower()), None
    )
    key = existing or requirement.name
    if extras:
        entry = tomlkit.inline_table()
        entry["version"] = version
        entry["extras"] = extras
        deps[key] = entry
    else:
        deps[key] = version
    atomic_write(path, tomlkit.dumps(doc).encode())
    try:
        load_manifest(project)
    except ManifestError:
        atomic_write(path, original.encode())
        raise


def cmd_add(args: argparse.Namespace) -> int:
    """Add or update one [python-dependencies] entry, then lock."""
    add_to_manifest(args.project.resolve(), args.spec, args.extras.split(","))
    if args.alias:
        name = Requirement(args.spec).name
        line = f'import python "{name}" as {args.alias}'
        _say(args, f"note: write `{line}` in a .mochi file to use the alias")
    args.check = args.dry_run = False
    return cmd_lock(args)


def cmd_stubs(args: argparse.Namespace) -> int:
    """Run the stub ladder for one locked package; print the tier and the stub files."""
    from packaging.utils import canonicalize_name

    project = args.project.resolve()
    data = read_lock(project)
    name = str(canonicalize_name(args.name))
    if data is None or name not in {p.name for p in data.packages}:
        raise PybridgeError(f"{args.name} is not in {project / LOCK_NAME}; lock it first")
    pipeline = _run(args, check=True).pipeline
    if name not in pipeline.stub_roots:
        raise PybridgeError(f"{name} is not a direct dependency with code: it has no bindings")
    provenance, source, root, package_dir = pipeline.stub_roots[name]
    print(f"{name}: tier {provenance}" + (f" (from {source})" if source else ""))
    base = root / package_dir if (root / package_dir).is_dir() else root
    for path in sorted(base.rglob("*")):
        if path.suffix in (".pyi", ".py") and path.is_file():
            print(f"  {path}")
    return int(ExitCode.OK)
