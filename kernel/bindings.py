"""The bindings half of ``lock``: unpack every locked wheel into a read-only site, run the
stub ladder (SPEC §4) for each direct dependency, synthesise its shim, sidecar and wrapper C,
compile the wrapper, and analyse every package's capabilities (SPEC §7).

Each step is a sandboxed stage whose output goes through intake, and each is cached by the
hashes of its inputs, the tool versions and the options, so a repeated lock starts none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sysconfig
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mochi_pybridge.kernel.errors import PybridgeError, StageFailed
from mochi_pybridge.kernel.events import StageEvent
from mochi_pybridge.kernel.graph import run_in_batches
from mochi_pybridge.kernel.lifecycle import StageId
from mochi_pybridge.kernel.store import cache_key, code_identity
from mochi_pybridge.sandbox.intake import IntakeRules, intake
from mochi_pybridge.sandbox.policy import StageKind

if TYPE_CHECKING:  # a runtime import would be circular
    from mochi_pybridge.kernel.pipeline import Pipeline, ResolvedPackage

BINDINGS_VERSION = 1
UNPACK_RUNNER = "mochi_pybridge.runners.unpack"
STUBGEN_RUNNER = "mochi_pybridge.runners.stubgen"
SYNTHESIS_RUNNER = "mochi_pybridge.runners.synthesis"
COMPILE_RUNNER = "mochi_pybridge.runners.compile"
CC = "/usr/bin/cc"
# Fixed by the kernel: the package has no say in how its wrapper is compiled.
CFLAGS = (
    "-shared",
    "-fPIC",
    "-O2",
    "-g0",
    "-fno-ident",
    "-ffile-prefix-map=/in/src=.",
    "-Wall",
    "-Werror=implicit-function-declaration",
)
WRAPPER_SUFFIXES = frozenset({".mochi", ".py", ".pyi", ".c", ".txt", ".json"})


def site_rules(wheels: int) -> IntakeRules:
    """What an unpack stage may leave: any names and suffixes (wheels carry data files), but
    bounded, and never read into memory (sites are moved into the cache, not copied)."""
    return IntakeRules(
        suffixes=None,
        max_files=100_000 * wheels,
        max_depth=50,
        max_file_size=1 << 30,
        max_total_size=(4 << 30) * wheels,
        read_data=False,
    )


class CapabilityRefused(PybridgeError):
    """A package can do something the project's [python.capabilities] does not allow."""


@dataclass
class WrapperFiles:
    alias: str
    module: str
    files: dict[str, bytes] = field(default_factory=dict)  # file name → content


@dataclass
class PackageBindings:
    stub_provenance: str
    stub_source: str | None
    stub_sha256: str
    wrapper_sha256: str
    skipped: int
    wrappers: list[WrapperFiles]


@dataclass(eq=False)
class _SynthesisJob:
    """One import's wrapper to synthesise, and where its result goes."""

    pkg: ResolvedPackage
    root: Path  # the stub root
    options: dict[str, Any]
    key: str  # result cache key
    owner: PackageBindings
    wrapper: WrapperFiles


_SYNTHESIS_RULES = IntakeRules(suffixes=WRAPPER_SUFFIXES, max_files=8, max_file_size=64 << 20)


def _tree_sha256(root: Path, files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _compiler_identity() -> str:
    try:
        out = subprocess.run(
            [CC, "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except OSError as exc:
        raise PybridgeError(f"no C compiler at {CC} ({exc}); install gcc") from None
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _stub_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in (".pyi", ".py") and p.is_file()]


def _make_read_only(root: Path) -> None:
    """Shared caches are never written after they are made (not by us, not by a stage)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            os.chmod(Path(dirpath, name), 0o444)
        os.chmod(dirpath, 0o555)  # noqa: S103 (read and traverse only)


class Bindings:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.sites_dir = pipeline.cache_dir / "sites"
        self._cc: str | None = None
        # Wrappers whose C awaits compile_deferred(): (package, wrapper, .so name, C source).
        self.deferred: list[tuple[ResolvedPackage, WrapperFiles, str, bytes]] = []
        # Imports whose wrapper awaits synthesize_deferred().
        self.pending: list[_SynthesisJob] = []
        # What prelookup_typeshed found: types-NAME → the stubs distribution, or None if the
        # index has none. Names not in here are looked up one by one.
        self.typeshed: dict[str, ResolvedPackage | None] = {}

    # -- sites -----------------------------------------------------------------------------

    def site_path(self, wheel_blake3: str) -> Path:
        return self.sites_dir / f"{wheel_blake3}-v{BINDINGS_VERSION}"

    async def unpack(self, name: str, record: Mapping[str, Any]) -> Path:
        """The read-only site directory of one wheel (made once, then shared)."""
        site = self.site_path(record["blake3"])
        if site.is_dir():
            self.p.stats.cache_hits += 1
            self.p.sink.emit(StageEvent("cached", "unpack", name))
            return site
        staging = self.p.work / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            shutil.copyfile(self.p.store.path_of(record["blake3"]), staging / record["filename"])
            # One stage unpacks and analyses (both read the same untrusted bytes, offline):
            # half the sandbox starts of running them apart.
            value, out = await self.p._run(
                StageId("unpack", name),
                StageKind.SYNTHESIS,
                "unpack",
                {
                    "wheel": f"{{in:wheel}}/{record['filename']}",
                    "top_level": record["metadata"]["top_level"],
                },
                site_rules(1),
                module=UNPACK_RUNNER,
                inputs={"wheel": staging},
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        try:
            self._adopt_site(out / "site", record)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(value.get("capabilities"), Mapping):
            self._remember_capabilities(record, value["capabilities"])
        return site

    def _capabilities_key(self, record: Mapping[str, Any]) -> str:
        return cache_key(
            stage="caps",
            v=BINDINGS_VERSION,
            wheel=record["blake3"],
            top=record["metadata"]["top_level"],
            code=code_identity("mochi_pybridge.runners.bindings.capabilities"),
        )

    def _remember_capabilities(
        self, record: Mapping[str, Any], raw: Mapping[str, Any]
    ) -> dict[str, list[str]]:
        caps = {str(k): [str(e) for e in v] for k, v in raw.items()}
        self.p.store.put_result(self._capabilities_key(record), {"capabilities": caps}, [])
        return caps

    async def preunpack(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Unpack (and analyse) every wheel without a site yet in at most ``jobs`` stages.
        What a batch could not do is left to ``unpack``, which redoes it alone."""
        pending = [(n, r) for n, r in items if not self.site_path(r["blake3"]).is_dir()]

        async def one(batch: list[tuple[str, Mapping[str, Any]]]) -> None:
            staging = self.p.work / uuid.uuid4().hex
            staging.mkdir(parents=True)
            try:
                for _, record in batch:
                    shutil.copyfile(
                        self.p.store.path_of(record["blake3"]), staging / record["filename"]
                    )
                params = {
                    "items": [
                        {
                            "wheel": f"{{in:wheels}}/{r['filename']}",
                            "top_level": r["metadata"]["top_level"],
                        }
                        for _, r in batch
                    ]
                }
                try:
                    value, out = await self.p._run(
                        StageId("unpack", f"{len(batch)} wheels"),
                        StageKind.SYNTHESIS,
                        "unpack_many",
                        params,
                        site_rules(len(batch)),
                        module=UNPACK_RUNNER,
                        inputs={"wheels": staging},
                    )
                except StageFailed:
                    return
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            try:
                for index, ((_, record), result) in enumerate(
                    zip(batch, value["results"], strict=False)
                ):
                    if result.get("ok"):
                        self._adopt_site(out / str(index) / "site", record)
                        if isinstance(result.get("capabilities"), Mapping):
                            self._remember_capabilities(record, result["capabilities"])
            finally:
                shutil.rmtree(out, ignore_errors=True)

        await run_in_batches(pending, self.p.jobs, one, weight=lambda item: item[1]["size"])

    def _adopt_site(self, unpacked: Path, record: Mapping[str, Any]) -> Path:
        """Move a checked site (intake passed, the stage is dead) into the shared cache."""
        site = self.site_path(record["blake3"])
        site.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(unpacked, site)
        except OSError:
            if not site.is_dir():  # another lock adopted the same wheel first: fine
                raise
            return site
        _make_read_only(site)
        return site

    # -- capabilities ----------------------------------------------------------------------

    async def capabilities(
        self, name: str, record: Mapping[str, Any], site: Path
    ) -> dict[str, list[str]]:
        top = record["metadata"]["top_level"]
        cached = self.p.store.get_result(self._capabilities_key(record))
        if cached is not None:
            self.p.stats.cache_hits += 1
            return dict(cached["capabilities"])
        value, out = await self.p._run(
            StageId("capabilities", name),
            StageKind.SYNTHESIS,
            "capabilities",
            {"site": "{in:site}", "top_level": top},
            IntakeRules(suffixes=frozenset(), max_files=0),
            module=SYNTHESIS_RUNNER,
            inputs={"site": site},
        )
        shutil.rmtree(out, ignore_errors=True)
        return self._remember_capabilities(record, value["capabilities"])

    def check_capabilities(self, name: str, caps: Mapping[str, list[str]]) -> None:
        allowed = self.p.manifest.capabilities
        for cap, evidence in sorted(caps.items()):
            if cap in allowed and not allowed[cap]:
                raise CapabilityRefused(
                    f"{name} needs capability `{cap}`, which mochi.toml's [python.capabilities] "
                    f"does not allow ({cap} = false). Evidence: {'; '.join(evidence[:3])}. "
                    f"Allow it ({cap} = true) or drop the dependency."
                )

    # -- stub ladder -----------------------------------------------------------------------

    async def stubs(
        self,
        pkg: ResolvedPackage,
        record: Mapping[str, Any],
        module: str,
        sites: Mapping[str, Path],
        resolved: Mapping[str, ResolvedPackage],
    ) -> tuple[str, str | None, Path, str]:
        """(provenance, source distribution, stub root, stub suffix) — first tier that hits."""
        site = sites[pkg.name]
        marker = site / module / "py.typed"
        inline = ("inline", f"{pkg.name} {pkg.version}", site, "")
        if marker.is_file() and "partial" not in marker.read_text(errors="replace")[:4096]:
            return inline
        # No marker, or a `partial` one (PEP 561): a stubs distribution wins if there is one.
        for candidate in (f"{pkg.name}-stubs", f"{module.replace('_', '-')}-stubs"):
            if candidate in sites and (sites[candidate] / f"{module}-stubs").is_dir():
                return (
                    "stubs-package",
                    f"{candidate} {resolved[candidate].version}",
                    sites[candidate],
                    "-stubs",
                )
        typeshed = await self._typeshed(pkg, module)
        if typeshed is not None:
            return typeshed
        if marker.is_file():
            return inline  # partial inline types are still better than stubgen's guesses
        if self.p.manifest.stubgen_fallback == "deny":
            raise PybridgeError(
                f"{pkg.name} is untyped (no py.typed, no stubs package, no types-{pkg.name}) and "
                'mochi.toml sets stubgen.fallback = "deny"'
            )
        return "stubgen", None, await self._stubgen(pkg, record, module, sites), ""

    async def _typeshed(
        self, pkg: ResolvedPackage, module: str
    ) -> tuple[str, str | None, Path, str] | None:
        requirement = f"types-{pkg.name}"
        absent_key, _ = self._typeshed_keys(requirement)
        if self.p.store.get_result(absent_key) is not None:
            self.p.stats.cache_hits += 1
            return None
        stub_pkg: ResolvedPackage | None
        if requirement in self.typeshed:
            stub_pkg = self.typeshed[requirement]
            if stub_pkg is None:
                self.p.store.put_result(absent_key, {"absent": True}, [])
                return None
        else:
            try:
                found = await self.p.resolve(requirements=[requirement], label=requirement)
            except StageFailed:
                # No such distribution on the index (remembered: `update` clears nothing, but
                # a new version of the package changes nothing here either).
                self.p.store.put_result(absent_key, {"absent": True}, [])
                return None
            assert found is not None
            stub_pkg = next((r for r in found if r.name == requirement), None)
            if stub_pkg is None:
                return None
            self._remember_typeshed(stub_pkg)
        stub_record = await self.p.fetch(stub_pkg)
        assert stub_record is not None
        site = await self.unpack(stub_pkg.name, stub_record)
        if not (site / f"{module}-stubs").is_dir():
            return None
        return "typeshed", f"{stub_pkg.name} {stub_pkg.version}", site, "-stubs"

    def _typeshed_keys(self, requirement: str) -> tuple[str, str]:
        """(cache key of "the index has no such distribution", cache key of what was found)."""
        indexes = [i.url for i in self.p.manifest.indexes]
        absent = cache_key(stage="typeshed-absent", requirement=requirement, indexes=indexes)
        found = cache_key(
            stage="typeshed-found",
            v=1,
            requirement=requirement,
            indexes=indexes,
            python=self.p._python,
            tags=self.p._tags[:3],
        )
        return absent, found

    def _remember_typeshed(self, stub: ResolvedPackage) -> None:
        wheel = dict(stub.wheels[0]) if stub.wheels else {}
        record = {"version": stub.version, "wheel": wheel}
        self.p.store.put_result(self._typeshed_keys(stub.name)[1], record, [])

    async def prelookup_typeshed(self, names: Sequence[str]) -> None:
        """Ask the index once for every ``types-NAME`` the stub ladder may reach (instead of one
        uv resolution each), then download and unpack what exists in batches. What is known
        from earlier locks is not asked again; if the lookup stage fails, ``_typeshed`` looks
        each up on its own."""
        from mochi_pybridge.kernel.pipeline import ResolvedPackage

        unknown = []
        for requirement in sorted({f"types-{name}" for name in names}):
            absent_key, found_key = self._typeshed_keys(requirement)
            known = self.p.store.get_result(found_key)
            if self.p.store.get_result(absent_key) is not None:
                self.typeshed[requirement] = None
            elif known is not None:
                self.typeshed[requirement] = ResolvedPackage(
                    requirement, known["version"], "", (known["wheel"],)
                )
            else:
                unknown.append(requirement)
        if not unknown:
            return
        params = {
            "names": unknown,
            "indexes": [i.url for i in self.p.manifest.indexes],
            "python_version": self.p._python,
            "tags": self.p._tags,
        }
        try:
            value, out = await self.p._run(
                StageId("fetch", f"{len(unknown)} stub lookups"),
                StageKind.FETCH,
                "latest_many",
                params,
                IntakeRules(suffixes=frozenset(), max_files=0),
            )
        except StageFailed:
            return
        shutil.rmtree(out, ignore_errors=True)
        found = []
        for item in value["results"]:
            if item["name"] not in unknown:
                continue
            if item.get("absent"):
                self.typeshed[item["name"]] = None
                continue
            wheel = {"url": item["url"], "sha256": item["sha256"], "size": item.get("size")}
            stub = ResolvedPackage(item["name"], item["version"], "", (wheel,))
            self.typeshed[stub.name] = stub
            self._remember_typeshed(stub)
            found.append(stub)
        await self.p.prefetch(found)
        await self.p._preunpack(self, found)

    async def _stubgen(
        self,
        pkg: ResolvedPackage,
        record: Mapping[str, Any],
        module: str,
        sites: Mapping[str, Path],
    ) -> Path:
        native = any(p.suffix == ".so" for p in sites[pkg.name].rglob("*.so"))
        key = cache_key(
            stage="stubgen",
            v=BINDINGS_VERSION,
            code=code_identity(STUBGEN_RUNNER),
            wheel=record["blake3"],
            module=module,
            sites=sorted(str(s.name) for s in sites.values()),
            inspect=self.p.manifest.stubgen_inspect_mode,
        )
        target = self.p.cache_dir / "stubgen" / key
        if target.is_dir():
            self.p.stats.cache_hits += 1
            return target
        names = sorted(sites)
        inputs = {f"site{i}": sites[n] for i, n in enumerate(names)}
        _, out = await self.p._run(
            StageId("stubgen", pkg.name),
            StageKind.STUBGEN,
            "stubgen",
            {
                "module": module,
                "paths": [f"{{in:site{i}}}" for i in range(len(names))],
                "inspect_mode": self.p.manifest.stubgen_inspect_mode,
                "native": native,
            },
            IntakeRules(
                suffixes=frozenset({".pyi"}),
                max_files=20_000,
                max_file_size=8 << 20,
                max_total_size=256 << 20,
                read_data=False,
            ),
            module=STUBGEN_RUNNER,
            inputs=inputs,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(out / "stubs", target)
        except OSError:
            if not target.is_dir():
                raise
        shutil.rmtree(out, ignore_errors=True)
        _make_read_only(target)
        return target

    # -- synthesis and compile -------------------------------------------------------------

    def _synthesis_job(
        self,
        pkg: ResolvedPackage,
        module: str,
        alias: str,
        root: Path,
        suffix: str,
        refuse: Mapping[str, str] | None,
        owner: PackageBindings,
    ) -> _SynthesisJob:
        options = {
            "module": module,
            "alias": alias,
            "package": pkg.name,
            "version": pkg.version,
            "int_mode": self.p.manifest.int_mode,
            "allow_partial": self.p.manifest.allow_partial,
            "strict_returns": self.p.manifest.strict_return_types,
            "async_mode": self.p.manifest.async_mode,
            "stub_suffix": suffix,
            "refuse": refuse,
        }
        key = cache_key(
            stage="synthesis",
            v=BINDINGS_VERSION,
            code=code_identity(SYNTHESIS_RUNNER, "mochi_pybridge.runners.bindings"),
            stubs=_tree_sha256(root, _stub_files(root)),
            options=options,
        )
        return _SynthesisJob(pkg, root, options, key, owner, WrapperFiles(alias, module, {}))

    def _keep_synthesis(self, job: _SynthesisJob, files: dict[str, bytes]) -> None:
        digests = {n: self.p.store.put(d) for n, d in files.items()}
        self.p.store.put_result(job.key, {"files": digests}, list(digests.values()))
        job.wrapper.files = files

    async def synthesize(self, job: _SynthesisJob) -> None:
        """One wrapper in its own stage (the path a failed batch falls back to)."""
        _, out = await self.p._run(
            StageId("synthesis", job.pkg.name),
            StageKind.SYNTHESIS,
            "synthesize",
            {**job.options, "stub_roots": ["{in:stubs}"]},
            _SYNTHESIS_RULES,
            module=SYNTHESIS_RUNNER,
            inputs={"stubs": job.root},
        )
        try:
            self._keep_synthesis(job, {f.path.name: f.data for f in intake(out, _SYNTHESIS_RULES)})
        finally:
            shutil.rmtree(out, ignore_errors=True)

    async def synthesize_deferred(self) -> None:
        """Synthesise every wrapper ``bind`` planned: cached ones from the store, the rest in at
        most ``jobs`` stages; then hand each wrapper's C to the compile step and total each
        package's wrappers."""
        pending = []
        for job in self.pending:
            cached = self.p.store.get_result(job.key)
            if cached is not None:
                self.p.stats.cache_hits += 1
                job.wrapper.files = {n: self.p.store.get(d) for n, d in cached["files"].items()}
            else:
                pending.append(job)

        async def one(batch: list[_SynthesisJob]) -> None:
            inputs = {f"s{i}": job.root for i, job in enumerate(batch)}
            items = [{**job.options, "stub_roots": [f"{{in:s{i}}}"]} for i, job in enumerate(batch)]
            rules = dataclasses.replace(
                _SYNTHESIS_RULES,
                max_files=len(batch) * _SYNTHESIS_RULES.max_files,
                max_total_size=len(batch) * _SYNTHESIS_RULES.max_file_size,
            )
            try:
                _, out = await self.p._run(
                    StageId("synthesis", f"{len(batch)} wrappers"),
                    StageKind.SYNTHESIS,
                    "synthesize_many",
                    {"items": items},
                    rules,
                    module=SYNTHESIS_RUNNER,
                    inputs=inputs,
                )
            except StageFailed:
                return  # redone one by one below, where the failure names the package
            try:
                produced: dict[str, dict[str, bytes]] = {}
                for f in intake(out, rules):
                    produced.setdefault(f.path.parts[0], {})[f.path.name] = f.data
                for i, job in enumerate(batch):
                    if str(i) in produced:
                        self._keep_synthesis(job, produced[str(i)])
            finally:
                shutil.rmtree(out, ignore_errors=True)

        await run_in_batches(pending, self.p.jobs, one)
        for job in pending:
            if not job.wrapper.files:
                await self.synthesize(job)
        for job in self.pending:
            self._plan_compile(job)
        for owner in {id(job.owner): job.owner for job in self.pending}.values():
            wrapper_hash = hashlib.sha256()
            for wrapper in owner.wrappers:
                for fname in sorted(wrapper.files):
                    if fname not in ("SKIPPED.txt", "summary.json") and not fname.endswith(".so"):
                        data = wrapper.files[fname]
                        wrapper_hash.update(fname.encode() + b"\0" + hashlib.sha256(data).digest())
            owner.wrapper_sha256 = wrapper_hash.hexdigest()
        self.pending.clear()

    def _plan_compile(self, job: _SynthesisJob) -> None:
        files = job.wrapper.files
        summary = json.loads(files.pop("summary.json"))
        job.owner.skipped += int(summary["skipped"])
        name = job.wrapper.module.replace(".", "_")
        so_name = f"_mochi_{name}.abi3.so"
        cached = self.p.store.get_result(self._compile_key(files[f"_mochi_{name}.c"]))
        if cached is not None:
            self.p.stats.cache_hits += 1
            files[so_name] = self.p.store.get(cached["so"])
        else:  # compiled after synthesis, batched with the other packages' wrappers
            self.deferred.append((job.pkg, job.wrapper, so_name, files[f"_mochi_{name}.c"]))

    def _compile_key(self, c_source: bytes) -> str:
        if self._cc is None:
            self._cc = _compiler_identity()
        return cache_key(
            stage="compile",
            v=BINDINGS_VERSION,
            source=hashlib.sha256(c_source).hexdigest(),
            cc=self._cc,
            flags=CFLAGS,
            include=sysconfig.get_paths()["include"],
        )

    async def compile_deferred(self) -> None:
        """Compile every wrapper ``bind`` left uncompiled, in at most ``jobs`` stages (one
        sandbox start per batch); a batch that fails is redone one wrapper at a time, so the
        error names the package."""
        pending = [
            (pkg, w, so_name, c) for pkg, w, so_name, c in self.deferred if so_name not in w.files
        ]

        async def one(batch: list[tuple[ResolvedPackage, WrapperFiles, str, bytes]]) -> None:
            staging = self.p.work / uuid.uuid4().hex
            staging.mkdir(parents=True)
            try:
                items = []
                for index, (_, _, so_name, c_source) in enumerate(batch):
                    (staging / f"{index}.c").write_bytes(c_source)
                    items.append(
                        {"source": f"{{in:src}}/{index}.c", "output_name": f"{index}-{so_name}"}
                    )
                try:
                    _, out = await self.p._run(
                        StageId("compile", f"{len(batch)} wrappers"),
                        StageKind.COMPILE,
                        "compile_many",
                        {
                            "items": items,
                            "cc": CC,
                            "flags": list(CFLAGS),
                            "include": sysconfig.get_paths()["include"],
                        },
                        IntakeRules(
                            suffixes=frozenset({".so"}),
                            max_files=len(batch),
                            max_file_size=64 << 20,
                            max_total_size=len(batch) * (64 << 20),
                        ),
                        module=COMPILE_RUNNER,
                        inputs={"src": staging},
                    )
                except StageFailed:
                    return  # compiled one by one below, where the failure is reported
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            try:
                for index, (_, wrapper, so_name, c_source) in enumerate(batch):
                    built = out / f"{index}-{so_name}"
                    if built.is_file():
                        data = built.read_bytes()
                        digest = self.p.store.put(data)
                        self.p.store.put_result(
                            self._compile_key(c_source), {"so": digest}, [digest]
                        )
                        wrapper.files[so_name] = data
            finally:
                shutil.rmtree(out, ignore_errors=True)

        await run_in_batches(pending, self.p.jobs, one)
        for pkg, wrapper, so_name, c_source in self.deferred:
            if so_name not in wrapper.files:
                wrapper.files[so_name] = await self.compile(pkg, wrapper.module, c_source)
        self.deferred.clear()

    async def compile(self, pkg: ResolvedPackage, module: str, c_source: bytes) -> bytes:
        name = module.replace(".", "_")
        include = sysconfig.get_paths()["include"]
        key = self._compile_key(c_source)
        cached = self.p.store.get_result(key)
        if cached is not None:
            self.p.stats.cache_hits += 1
            return self.p.store.get(cached["so"])
        staging = self.p.work / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            (staging / f"_mochi_{name}.c").write_bytes(c_source)
            output_name = f"_mochi_{name}.abi3.so"
            _, out = await self.p._run(
                StageId("compile", pkg.name),
                StageKind.COMPILE,
                "compile",
                {
                    "source": f"{{in:src}}/_mochi_{name}.c",
                    "output_name": output_name,
                    "cc": CC,
                    "flags": list(CFLAGS),
                    "include": include,
                },
                IntakeRules(suffixes=frozenset({".so"}), max_files=1, max_file_size=64 << 20),
                module=COMPILE_RUNNER,
                inputs={"src": staging},
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        data = (out / output_name).read_bytes()
        shutil.rmtree(out, ignore_errors=True)
        digest = self.p.store.put(data)
        self.p.store.put_result(key, {"so": digest}, [digest])
        return data

    async def bind(
        self,
        pkg: ResolvedPackage,
        record: Mapping[str, Any],
        imports: Sequence[tuple[str, str]],
        sites: Mapping[str, Path],
        resolved: Mapping[str, ResolvedPackage],
        caps: Mapping[str, list[str]],
    ) -> PackageBindings:
        from mochi_pybridge.kernel.pipeline import module_name

        # The ladder works per distribution, on its main module.
        module = module_name(pkg.name, record["metadata"]["top_level"]) or pkg.name.replace(
            "-", "_"
        )
        refuse: dict[str, str] | None = None
        if caps.get("trio"):
            refuse = {
                "token": "SkipIncompatibleAsyncRuntime",
                "detail": f"{module} imports trio ({caps['trio'][0]}); only asyncio bridges",
            }
        try:
            provenance, source, root, suffix = await self.stubs(
                pkg, record, module, sites, resolved
            )
            self.p.stub_roots[pkg.name] = (provenance, source, root, module + suffix)
        except StageFailed as exc:
            # stubgen could not import the package: the package is skipped, the lock goes on.
            token = str(exc.details.get("skip", "SkipImportTimeError"))
            refuse = {"token": token, "detail": exc.diagnostics().splitlines()[0]}
            provenance, source, root, suffix = "stubgen", None, sites[pkg.name], ""
        stub_dir = root / f"{module}{suffix}" if (root / f"{module}{suffix}").is_dir() else root
        stub_files = _stub_files(stub_dir)
        if not stub_files:
            single = [
                p for p in (root / f"{module}{suffix}.pyi", root / f"{module}.py") if p.is_file()
            ]
            stub_files = single
        stub_sha = _tree_sha256(root, stub_files) if stub_files else hashlib.sha256(b"").hexdigest()
        owner = PackageBindings(provenance, source, stub_sha, "", 0, [])
        for alias, target in imports:
            job = self._synthesis_job(pkg, target, alias, root, suffix, refuse, owner)
            owner.wrappers.append(job.wrapper)
            self.pending.append(job)
        return owner  # filled in by synthesize_deferred()


def write_python_wrap(project: Path, wrappers: Sequence[WrapperFiles]) -> None:
    """Replace python_wrap/ALIAS/ directories whole: build aside, then swap."""
    root = project / "python_wrap"
    root.mkdir(exist_ok=True)
    wanted = {w.alias for w in wrappers}
    for wrapper in wrappers:
        fresh = root / f".{wrapper.alias}.new-{uuid.uuid4().hex[:8]}"
        fresh.mkdir()
        for fname, data in sorted(wrapper.files.items()):
            path = fresh / fname
            path.write_bytes(data)
            if fname.endswith(".so"):
                path.chmod(path.stat().st_mode | stat.S_IXUSR)
        final = root / wrapper.alias
        old = root / f".{wrapper.alias}.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.rename(final, old)
        os.rename(fresh, final)
        shutil.rmtree(old, ignore_errors=True)
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith(".") and child.name not in wanted:
            shutil.rmtree(child)


__all__ = ["Bindings", "PackageBindings", "WrapperFiles", "write_python_wrap"]
