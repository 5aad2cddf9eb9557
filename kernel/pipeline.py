"""The package-manager half of ``lock``: resolve → fetch per package → mochi.lock + pylock.toml.

Every step that touches the network or untrusted bytes runs as a sandboxed stage; the kernel
only plans, checks what comes back (intake, hashes), stores it, and writes the lock. Stage
results are cached by everything that determines them, so a repeated ``lock`` with nothing
changed starts no runner at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from mochi_pybridge.kernel.egress import ProxyLog, Target, allow_list, proxied
from mochi_pybridge.kernel.errors import IntegrityError, PybridgeError, StageFailed
from mochi_pybridge.kernel.events import EventSink, StageEvent
from mochi_pybridge.kernel.graph import Outcome, StageSpec, run_graph, run_in_batches
from mochi_pybridge.kernel.lifecycle import StageId, run_stage, runner_argv
from mochi_pybridge.kernel.lockfile import LockData, LockedPackage
from mochi_pybridge.kernel.manifest import Manifest
from mochi_pybridge.kernel.retry import with_retries
from mochi_pybridge.kernel.store import Store, cache_key
from mochi_pybridge.protocol import Log, Progress
from mochi_pybridge.sandbox import availability
from mochi_pybridge.sandbox.intake import IntakeRules, intake
from mochi_pybridge.sandbox.policy import POLICIES, StageKind, StagePolicy

FETCH_RUNNER = "mochi_pybridge.runners.fetch"
VERIFY_RUNNER = "mochi_pybridge.runners.verify"
# Indexes known to serve their files from another host (PEP 503 allows any file URL).
FILE_HOSTS = {
    "pypi.org": ("files.pythonhosted.org",),
    "test.pypi.org": ("test-files.pythonhosted.org",),
}
# Bump when what a stage computes changes, so old cache entries stop matching.
RESOLVE_VERSION = 1
FETCH_VERSION = 1
VERIFY_VERSION = 1
_INDEX_HINT = (
    "a fetch stage may reach only the configured indexes and their file hosts; an index that "
    'serves files from another host can name it: file-hosts = ["host"]'
)
# How a TLS client finds its trust roots. The host's proxy settings are not passed on: stages
# reach the network through the kernel's egress proxy, which honours them itself.
_TLS_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass(frozen=True)
class ResolvedPackage:
    name: str
    version: str
    marker: str
    wheels: tuple[Mapping[str, Any], ...]


@dataclass
class PipelineStats:
    runners_started: int = 0
    cache_hits: int = 0


@dataclass
class Pipeline:
    manifest: Manifest
    cache_dir: Path
    sink: EventSink
    jobs: int = 1
    unsafe_no_sandbox: bool = False
    stats: PipelineStats = field(default_factory=PipelineStats)
    wrappers: list[Any] = field(default_factory=list)  # WrapperFiles of the last compute()
    # package → (stub provenance, source distribution, stub root, stub package dir name)
    stub_roots: dict[str, tuple[str, str | None, Path, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = Store(self.cache_dir / "store")
        self.work = self.cache_dir / "work"
        self._sandbox_checked = False
        self._tags = [str(t) for t in sys_tags()]
        self._python = f"{sys.version_info.major}.{sys.version_info.minor}"

    # -- stages ----------------------------------------------------------------------------

    def egress_allowed(self) -> frozenset[Target]:
        """Where fetch stages may connect: the configured indexes, the file host of an index
        known to serve its files elsewhere (PyPI's), and each index's declared ``file-hosts``
        (same scheme as the index). A wheel or metadata URL anywhere else is refused, and the
        refusal is reported."""
        urls = []
        for index in self.manifest.indexes:
            parts = urllib.parse.urlsplit(index.url)
            if parts.scheme not in ("http", "https"):
                continue  # a file:// index needs no network
            urls.append(index.url)
            urls += [f"https://{h}/" for h in FILE_HOSTS.get(parts.hostname or "", ())]
            urls += [f"{parts.scheme}://{h}/" for h in index.file_hosts]
        return allow_list(urls)

    async def _run(
        self,
        stage: StageId,
        kind: StageKind,
        method: str,
        params: Mapping[str, Any],
        rules: IntakeRules,
        *,
        module: str = FETCH_RUNNER,
        inputs: Mapping[str, Path] | None = None,
        egress: frozenset[Target] | None = None,
        extra_fds: Sequence[int] = (),
    ) -> tuple[Mapping[str, Any], Path]:
        """Run one stage in a fresh output directory; return its value and the checked dir.

        A stage whose policy has ``egress`` gets the kernel's proxy for its lifetime, allowing
        ``egress`` (default: the configured indexes, see ``egress_allowed``)."""
        if not self.unsafe_no_sandbox and not self._sandbox_checked:
            await trio.to_thread.run_sync(availability.ensure_available)
            self._sandbox_checked = True
        policy = POLICIES[kind]
        env, extra_paths = tls_env() if policy.egress else ({}, ())
        if extra_paths:
            policy = with_paths(policy, extra_paths)
        out = self.work / uuid.uuid4().hex
        out.mkdir(parents=True)
        started = time.monotonic()
        self.sink.emit(StageEvent("start", stage.kind, stage.package))

        def progress(event: Progress | Log) -> None:
            if isinstance(event, Progress):
                self.sink.emit(
                    StageEvent(
                        "progress",
                        stage.kind,
                        stage.package,
                        event.message,
                        event.done,
                        event.total,
                    )
                )
            else:
                self.sink.emit(StageEvent("log", stage.kind, stage.package, event.text))

        async def attempt() -> Mapping[str, Any]:
            for child in out.iterdir():  # a retry starts from an empty directory again
                shutil.rmtree(
                    child
                ) if child.is_dir() and not child.is_symlink() else child.unlink()
            self.stats.runners_started += 1
            return await run_stage(
                stage,
                policy,
                runner_argv(module),
                method,
                {**params, "out": "{out}"},
                inputs=inputs,
                output_dir=out,
                on_progress=progress,
                unsafe_no_sandbox=self.unsafe_no_sandbox,
                env=env,
                extra_fds=extra_fds,
            )

        def retrying(number: int, exc: StageFailed, delay: float) -> None:
            text = f"attempt {number} failed ({exc.diagnostics()}); retrying in {delay:.1f}s"
            self.sink.emit(StageEvent("log", stage.kind, stage.package, text))

        proxy_log = ProxyLog()
        try:
            if policy.egress:
                allowed = self.egress_allowed() if egress is None else egress
                async with proxied(allowed, proxy_log) as proxy_dir:
                    inputs = {**(inputs or {}), "proxy": proxy_dir}
                    params = {**params, "proxy": "{in:proxy}/proxy.sock"}
                    value = await with_retries(attempt, on_retry=retrying)
            else:
                value = await with_retries(attempt, on_retry=retrying)
            intake(out, rules)
        except BaseException as exc:
            failure = exc
            if proxy_log.refused and isinstance(exc, StageFailed):
                # Say why the stage could not reach what it asked for.
                hint = _INDEX_HINT if egress is None else "it is not a service this stage needs"
                failure = StageFailed(
                    f"{exc.args[0]}\nthe egress proxy refused: {proxy_log.refused[0]} ({hint})",
                    code=exc.code,
                    details=exc.details,
                )
            self.sink.emit(
                StageEvent(
                    "fail",
                    stage.kind,
                    stage.package,
                    _short(failure),
                    elapsed=time.monotonic() - started,
                )
            )
            shutil.rmtree(out, ignore_errors=True)
            if failure is not exc:
                raise failure from None
            raise
        finally:
            for line in proxy_log.refused:
                self.sink.emit(StageEvent("log", stage.kind, stage.package, f"refused: {line}"))
        self.sink.emit(
            StageEvent("finish", stage.kind, stage.package, elapsed=time.monotonic() - started)
        )
        return value, out

    # -- resolve ---------------------------------------------------------------------------

    def _requirements(self) -> list[str]:
        return [d.requirement() for d in self.manifest.dependencies]

    async def resolve(
        self,
        *,
        upgrade: Sequence[str] = (),
        upgrade_all: bool = False,
        dry_run: bool = False,
        requirements: Sequence[str] | None = None,
        label: str = "*",
    ) -> list[ResolvedPackage] | None:
        params = {
            "requirements": list(requirements)
            if requirements is not None
            else self._requirements(),
            "python_version": self._python,
            "indexes": [i.url for i in self.manifest.indexes],
            "upgrade": sorted(upgrade),
            "upgrade_all": upgrade_all,
        }
        key = cache_key(
            stage="resolve",
            v=RESOLVE_VERSION,
            params=params,
            requires_python=self.manifest.requires_python,
            tags=self._tags[:3],
        )
        cached = None if (upgrade or upgrade_all) else self.store.get_result(key)
        if dry_run:
            print(f"resolve: {'cached' if cached else 'would run uv in the fetch sandbox'}")
            if not cached:
                return None
        if cached is not None:
            self.stats.cache_hits += 1
            self.sink.emit(StageEvent("cached", "resolve", label))
            resolved = json.loads(self.store.get(cached["resolved"]))
        else:
            _, out = await self._run(
                StageId("resolve", label),
                StageKind.FETCH,
                "resolve",
                params,
                IntakeRules(suffixes=frozenset({".json"}), max_files=1, max_file_size=64 << 20),
            )
            data = (out / "resolved.json").read_bytes()
            shutil.rmtree(out, ignore_errors=True)
            resolved = json.loads(data)
            digest = self.store.put(data)
            self.store.put_result(key, {"resolved": digest}, [digest])
        if resolved.get("resolver") == "pip":
            self.sink.emit(StageEvent("log", "resolve", "*", "resolved with pip (uv unavailable)"))
        return [_resolved_package(p) for p in resolved["packages"]]

    # -- fetch -----------------------------------------------------------------------------

    def choose_wheel(self, pkg: ResolvedPackage) -> Mapping[str, Any]:
        """The resolver's wheel that best fits this interpreter (by sys_tags priority)."""
        rank = {tag: i for i, tag in enumerate(self._tags)}
        best: tuple[int, Mapping[str, Any]] | None = None
        for wheel in pkg.wheels:
            filename = str(wheel["url"]).rsplit("/", 1)[-1].split("#", 1)[0]
            try:
                _, _, _, tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:
                continue
            score = min((rank[str(t)] for t in tags if str(t) in rank), default=None)
            if score is not None and (best is None or score < best[0]):
                best = (score, {**wheel, "filename": filename})
        if best is None:
            raise PybridgeError(
                f"{pkg.name} {pkg.version} has no wheel for this interpreter "
                f"(CPython {self._python}, {self._tags[0]}); mochi-pybridge does not build "
                "sdists, so pick a version with a matching wheel"
            )
        return best[1]

    def _fetch_key(self, pkg: ResolvedPackage, wheel: Mapping[str, Any]) -> str:
        return cache_key(
            stage="fetch",
            v=FETCH_VERSION,
            name=pkg.name,
            version=pkg.version,
            filename=wheel["filename"],
            indexes=[i.url for i in self.manifest.indexes],
        )

    async def verify_provenance(
        self, pkg: ResolvedPackage, record: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """PEP 740: verify the index's attestations for the wheel, offline, in a sandbox."""
        if not record.get("provenance"):
            if self.manifest.require_attestations:
                raise PybridgeError(
                    f"{pkg.name} {pkg.version}: the index serves no PEP 740 attestation for "
                    f"{record['filename']}, and mochi.toml sets require-attestations = true"
                )
            return {"attestation": "absent"}
        key = cache_key(
            stage="verify",
            v=VERIFY_VERSION,
            wheel=record["blake3"],
            provenance=record["provenance"],
        )
        cached = self.store.get_result(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        filename = record["filename"]
        staging = self.work / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            shutil.copyfile(self.store.path_of(record["blake3"]), staging / filename)
            shutil.copyfile(
                self.store.path_of(record["provenance"]), staging / f"{filename}.provenance"
            )
            params = {
                "dist": f"{{in:dist}}/{filename}",
                "provenance": f"{{in:dist}}/{filename}.provenance",
            }
            try:
                value, out = await self._run(
                    StageId("verify", pkg.name),
                    StageKind.SYNTHESIS,
                    "attestation",
                    params,
                    IntakeRules(suffixes=frozenset(), max_files=0),
                    module=VERIFY_RUNNER,
                    inputs={"dist": staging},
                )
            except StageFailed as exc:
                if exc.code == "integrity":
                    raise IntegrityError(
                        f"{pkg.name} {pkg.version}: PEP 740 attestation failed: {exc.diagnostics()}"
                    ) from None
                raise
            shutil.rmtree(out, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        identity = "; ".join(value.get("identities", []))
        result = {"attestation": "verified", "attestation_identity": identity}
        self.store.put_result(key, result, [record["blake3"], record["provenance"]])
        return result

    async def fetch(
        self, pkg: ResolvedPackage, *, dry_run: bool = False
    ) -> Mapping[str, Any] | None:
        wheel = self.choose_wheel(pkg)
        indexes = [i.url for i in self.manifest.indexes]
        key = self._fetch_key(pkg, wheel)
        cached = self.store.get_result(key)  # verifies every blob it names: not trusted
        if dry_run:
            print(
                f"fetch {pkg.name} {pkg.version}: "
                + ("cached" if cached else f"would download {wheel['filename']}")
            )
            return cached
        if cached is not None:
            self.stats.cache_hits += 1
            self.sink.emit(StageEvent("cached", "fetch", pkg.name))
            return cached
        last_error: BaseException | None = None
        for index_url in indexes:
            try:
                value, out = await self._run(
                    StageId("fetch", pkg.name),
                    StageKind.FETCH,
                    "download",
                    {"name": pkg.name, "filename": wheel["filename"], "index_url": index_url},
                    IntakeRules(
                        suffixes=frozenset({".whl", ".provenance"}),
                        max_files=2,
                        max_file_size=2 << 30,
                        max_total_size=2 << 30,
                        read_data=False,
                    ),
                )
            except StageFailed as exc:
                if exc.code == "integrity" or "is not listed" not in str(exc):
                    raise
                last_error = exc
                continue
            try:
                return self._ingest(pkg, wheel, index_url, value, out, key)
            finally:
                shutil.rmtree(out, ignore_errors=True)
        assert last_error is not None
        raise last_error

    def _ingest(
        self,
        pkg: ResolvedPackage,
        wheel: Mapping[str, Any],
        index_url: str,
        value: Mapping[str, Any],
        out: Path,
        key: str,
    ) -> Mapping[str, Any]:
        """Check the stage's claims against the bytes themselves, then store them. The
        caller removes ``out``."""
        filename = wheel["filename"]
        blake, sha, size = self.store.put_file(out / filename)
        advertised = str(value.get("pypi_simple_sha256", ""))
        resolver_sha = str(wheel.get("sha256") or "")
        if sha != advertised or (resolver_sha and resolver_sha != advertised):
            raise IntegrityError(
                f"{filename}: hash mismatch: downloaded bytes sha256 {sha}, index page "
                f"advertises {advertised or 'nothing'}, "
                f"resolver saw {resolver_sha or 'nothing'}. "
                "Nothing was written."
            )
        blobs = [blake]
        provenance = None
        if value.get("provenance"):
            provenance, _, _ = self.store.put_file(out / f"{filename}.provenance")
            blobs.append(provenance)
        yanked = value.get("yanked", False)
        if yanked:
            reason = f": {yanked}" if isinstance(yanked, str) else ""
            warning = f"warning: {filename} is yanked on the index{reason}"
            self.sink.emit(StageEvent("log", "fetch", pkg.name, warning))
        meta = _checked_metadata(pkg, value.get("metadata"))
        record = {
            "filename": filename,
            "url": str(value.get("url", "")),
            "index_url": index_url,
            "sha256": sha,
            "blake3": blake,
            "size": size,
            "pypi_simple_sha256": advertised,
            "yanked": value.get("yanked", False),
            "provenance": provenance,
            "metadata": meta,
        }
        self.store.put_result(key, record, blobs)
        return record

    async def prefetch(self, resolved: Sequence[ResolvedPackage]) -> None:
        """Download every uncached wheel in at most ``jobs`` stages (one sandbox start per
        batch, not per wheel). Anything a batch could not do is left to the per-package
        fetch, which retries it alone and reports it precisely."""
        index_url = self.manifest.indexes[0].url
        pending = []
        for pkg in resolved:
            wheel = self.choose_wheel(pkg)
            key = self._fetch_key(pkg, wheel)
            if self.store.get_result(key) is None:
                pending.append((pkg, wheel, key))

        async def one(batch: list[tuple[ResolvedPackage, Mapping[str, Any], str]]) -> None:
            items = [
                {"name": p.name, "filename": w["filename"], "index_url": index_url}
                for p, w, _ in batch
            ]
            try:
                value, out = await self._run(
                    StageId("fetch", f"{len(batch)} wheels"),
                    StageKind.FETCH,
                    "download_many",
                    {"items": items},
                    IntakeRules(
                        suffixes=frozenset({".whl", ".provenance"}),
                        max_files=2 * len(batch),
                        max_file_size=2 << 30,
                        max_total_size=8 << 30,
                        read_data=False,
                    ),
                )
            except StageFailed:
                return  # the per-package fetches will redo it, one by one
            try:
                for (pkg, wheel, key), result in zip(batch, value["results"], strict=False):
                    if result.get("ok") and result.get("filename") == wheel["filename"]:
                        # A failure here is refetched alone, and then reported.
                        with contextlib.suppress(PybridgeError):
                            self._ingest(pkg, wheel, index_url, result, out, key)
            finally:
                shutil.rmtree(out, ignore_errors=True)

        await run_in_batches(pending, self.jobs, one, weight=lambda item: item[1].get("size") or 0)

    # -- the whole lock --------------------------------------------------------------------

    async def compute(
        self, *, upgrade: Sequence[str] = (), upgrade_all: bool = False, dry_run: bool = False
    ) -> LockData | None:
        """Resolve, fetch, verify, unpack, analyse and bind (wrappers go to ``self.wrappers``)."""
        from mochi_pybridge.kernel.bindings import Bindings

        resolved = await self.resolve(upgrade=upgrade, upgrade_all=upgrade_all, dry_run=dry_run)
        if resolved is None:
            return None
        if dry_run:
            for pkg in resolved:
                await self.fetch(pkg, dry_run=True)
            return None
        bindings = Bindings(self)
        await self.prefetch(resolved)
        await self._preunpack(bindings, resolved)
        await bindings.prelookup_typeshed(self._untyped_direct(bindings, resolved))
        by_name = {p.name: p for p in resolved}
        direct = {d.name for d in self.manifest.dependencies}
        records: dict[str, Mapping[str, Any]] = {}
        sites: dict[str, Path] = {}
        caps: dict[str, dict[str, list[str]]] = {}
        package_specs = [StageSpec(f"pkg:{p.name}", "fetch", p.name) for p in resolved]
        bind_specs = [
            StageSpec(f"bind:{p.name}", "bind", p.name, tuple(s.key for s in package_specs))
            for p in resolved
            if p.name in direct and not _is_stub_only(p.name)
        ]

        async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> Any:
            pkg = by_name[spec.package]
            if spec.kind == "fetch":
                record = await self.fetch(pkg)
                assert record is not None
                record = {**record, **await self.verify_provenance(pkg, record)}
                records[pkg.name] = record
                sites[pkg.name] = await bindings.unpack(pkg.name, record)
                caps[pkg.name] = await bindings.capabilities(pkg.name, record, sites[pkg.name])
                bindings.check_capabilities(pkg.name, caps[pkg.name])
                return record
            imports = self._imports(pkg.name, records[pkg.name]["metadata"]["top_level"])
            return await bindings.bind(
                pkg, records[pkg.name], imports, sites, by_name, caps[pkg.name]
            )

        run = await run_graph(package_specs + bind_specs, execute, jobs=self.jobs, fail_fast=True)
        failures = [run.outcomes[k].error for k in run.failed]
        if failures:
            error = failures[0]
            assert error is not None
            raise error
        await bindings.synthesize_deferred()
        await bindings.compile_deferred()
        bound = {s.package: run.outcomes[s.key].value for s in bind_specs}
        self.wrappers = [w for b in bound.values() for w in b.wrappers]
        self._check_alias_clashes()
        return self._lock_data(resolved, records, bound, caps)

    def _untyped_direct(self, bindings: Any, resolved: Sequence[ResolvedPackage]) -> list[str]:
        """Direct dependencies the stub ladder will take past the inline tier (no complete
        ``py.typed``, no ``-stubs`` distribution locked), judged from the unpacked sites."""
        direct = {d.name for d in self.manifest.dependencies}
        names = {p.name for p in resolved}
        untyped = []
        for pkg in resolved:
            if pkg.name not in direct or _is_stub_only(pkg.name) or f"{pkg.name}-stubs" in names:
                continue
            record = self.store.get_result(self._fetch_key(pkg, self.choose_wheel(pkg)))
            if record is None:
                continue  # not fetched in a batch: its own ladder will look it up
            module = module_name(pkg.name, record["metadata"]["top_level"]) or pkg.name
            marker = bindings.site_path(record["blake3"]) / module / "py.typed"
            if not marker.is_file() or "partial" in marker.read_text(errors="replace")[:4096]:
                untyped.append(pkg.name)
        return untyped

    async def _preunpack(self, bindings: Any, resolved: Sequence[ResolvedPackage]) -> None:
        """Batch-unpack what the prefetch stored; anything else is done per package later."""
        items = []
        for pkg in resolved:
            record = self.store.get_result(self._fetch_key(pkg, self.choose_wheel(pkg)))
            if record is not None:
                items.append((pkg.name, record))
        await bindings.preunpack(items)

    def _check_alias_clashes(self) -> None:
        seen: dict[str, str] = {}
        for wrapper in self.wrappers:
            other = seen.setdefault(wrapper.alias, wrapper.module)
            if other != wrapper.module:
                raise PybridgeError(
                    f"two imports use the alias {wrapper.alias!r} ({other} and {wrapper.module}); "
                    "give one of them another `as` name"
                )

    def _lock_data(
        self,
        resolved: list[ResolvedPackage],
        fetched: Mapping[str, Any],
        bound: Mapping[str, Any],
        caps: Mapping[str, Mapping[str, list[str]]],
    ) -> LockData:
        from mochi_pybridge.kernel.manifest import CAPABILITIES

        direct = {d.name for d in self.manifest.dependencies}
        packages = []
        for pkg in resolved:
            record = fetched[pkg.name]
            meta = record["metadata"]
            module = module_name(pkg.name, meta["top_level"])
            extra: dict[str, Any] = {
                "capabilities": sorted(c for c in caps.get(pkg.name, {}) if c in CAPABILITIES),
            }
            if pkg.name in bound:
                b = bound[pkg.name]
                extra.update(
                    {
                        "stub-provenance": b.stub_provenance,
                        "stub-sha256": b.stub_sha256,
                        "wrapper-sha256": b.wrapper_sha256,
                        "skipped": b.skipped,
                    }
                )
                if b.stub_source:
                    extra["stub-source"] = b.stub_source
            packages.append(
                LockedPackage(
                    name=pkg.name,
                    version=pkg.version,
                    alias=self._imports(pkg.name, meta["top_level"])[0][0]
                    if pkg.name in direct
                    else None,
                    direct=pkg.name in direct,
                    source={"kind": "index", "url": record["index_url"]},
                    wheel_filename=record["filename"],
                    wheel_url=record["url"],
                    wheel_size=record["size"],
                    wheel_sha256=record["sha256"],
                    wheel_blake3=record["blake3"],
                    pypi_simple_sha256=record["pypi_simple_sha256"],
                    dependencies=tuple(sorted(meta["requires_dist"])),
                    markers=pkg.marker,
                    module=module,
                    attestation=record["attestation"],
                    attestation_identity=record.get("attestation_identity"),
                    extra=extra,
                )
            )
        sandbox = "unsafe-no-sandbox"
        if not self.unsafe_no_sandbox:
            version = availability.bwrap_version(availability.find_bwrap())
            sandbox = f"bwrap {'.'.join(map(str, version))}; seccomp"
        from mypy.version import __version__ as mypy_version

        return LockData(
            requires_python=self.manifest.requires_python,
            interpreter=f"cpython-{self._python}",
            stubgen=f"mypy {mypy_version}",
            sandbox=sandbox,
            packages=tuple(packages),
        )

    def _imports(self, name: str, modules: Sequence[str]) -> list[tuple[str, str]]:
        """(alias, module) for every ``import python`` of this package or one of its
        submodules (``import python "lxml.etree" as etree``); none: its module name."""
        found: list[tuple[str, str]] = []
        module = module_name(name, modules) or name.replace("-", "_")
        for key, aliases in sorted(self.manifest.aliases.items()):
            if key in (name, *modules):
                target = module
            elif any(key.startswith(f"{m}.") for m in modules):
                target = key
            else:
                continue
            found += [(alias, target) for alias in aliases if (alias, target) not in found]
        return found or [(module, module)]


def _is_stub_only(name: str) -> bool:
    """A stubs distribution (``lxml-stubs``, ``types-requests``) supplies types to another
    package; it has no code of its own to bind."""
    return name.endswith("-stubs") or name.startswith("types-")


def module_name(name: str, top_level: Sequence[str]) -> str | None:
    """The import name: the top-level package named like the distribution, else the first
    public one (pyyaml → yaml, not its private _yaml), else the first."""
    wanted = name.replace("-", "_").lower()
    for module in top_level:
        if module.lower() == wanted:
            return module
    public = [m for m in top_level if not m.startswith("_")]
    candidates = public or list(top_level)
    return candidates[0] if candidates else None


def tls_env() -> tuple[dict[str, str], tuple[str, ...]]:
    """The TLS settings a stage that talks to the network needs, its environment being
    cleared otherwise, and the files to bind for them (a private CA bundle outside /etc/ssl)."""
    env: dict[str, str] = {}
    extra_paths: list[str] = []
    for name in _TLS_VARS:
        value = os.environ.get(name)
        if value:
            env[name] = value
    pip_cert = os.environ.get("PIP_CERT")
    if pip_cert and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = pip_cert
    if "SSL_CERT_FILE" not in env and Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if name in env and not env[name].startswith(("/etc/ssl", "/etc/pki", "/etc/ca-")):
            extra_paths.append(os.path.realpath(env[name]))
    return env, tuple(extra_paths)


def with_paths(policy: StagePolicy, paths: tuple[str, ...]) -> StagePolicy:
    return dataclasses.replace(policy, system_paths=(*policy.system_paths, *paths))


def _short(exc: BaseException) -> str:
    if isinstance(exc, PybridgeError):
        return exc.diagnostics().splitlines()[0]
    return f"{type(exc).__name__}: {exc}"


def _resolved_package(raw: Mapping[str, Any]) -> ResolvedPackage:
    try:
        return ResolvedPackage(
            name=str(canonicalize_name(str(raw["name"]))),
            version=str(raw["version"]),
            marker=str(raw.get("marker") or ""),
            wheels=tuple(dict(w) for w in raw["wheels"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PybridgeError(f"the resolver's output is malformed ({exc})") from None


def _checked_metadata(pkg: ResolvedPackage, meta: object) -> dict[str, Any]:
    """The runner's reading of METADATA, validated before anything relies on it."""
    if not isinstance(meta, Mapping):
        raise PybridgeError(f"{pkg.name}: the fetch stage returned no metadata")
    if (
        canonicalize_name(str(meta.get("name", ""))) != pkg.name
        or str(meta.get("version")) != pkg.version
    ):
        raise IntegrityError(
            f"{pkg.name} {pkg.version}: the wheel's METADATA says "
            f"{meta.get('name')!s:.80} {meta.get('version')!s:.40}"
        )
    requires = []
    for raw in meta.get("requires_dist", []):
        try:
            requires.append(str(Requirement(str(raw))))
        except InvalidRequirement:
            raise PybridgeError(f"{pkg.name}: invalid Requires-Dist {raw!s:.120}") from None
    top = [str(t) for t in meta.get("top_level", []) if str(t).isidentifier()]
    return {
        "requires_dist": requires,
        "top_level": sorted(top),
        "requires_python": str(meta.get("requires_python", "")),
    }


__all__ = ["Pipeline", "PipelineStats", "ResolvedPackage", "module_name"]
