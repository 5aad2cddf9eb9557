"""mochi.toml and the project's ``import python`` lines, read and validated (SPEC §3).

Every problem is a ``ManifestError`` naming the file, the line and the key, so a user can fix
it without guessing. Unknown keys are errors: a typo must not silently do nothing.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from mochi_pybridge.kernel.errors import ExitCode, PybridgeError

MANIFEST = "mochi.toml"
DEFAULT_INDEX = "https://pypi.org/simple/"
CAPABILITIES = ("net", "fs", "proc", "ctypes", "cextension", "monkey-patch")

# import python "NAME[@SPEC]" [as ALIAS]
_IMPORT = re.compile(
    r'^\s*import\s+python\s+"(?P<target>[^"]+)"(?:\s+as\s+(?P<alias>[A-Za-z_][A-Za-z0-9_]*))?'
)


_MODULE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|[A-Za-z0-9][A-Za-z0-9._-]*"
)


class ManifestError(PybridgeError):
    exit_code = ExitCode.FAILURE


@dataclass(frozen=True, slots=True)
class Dependency:
    name: str  # PEP 503 normalised
    specifier: str  # PEP 440, "" for any version
    extras: tuple[str, ...] = ()
    markers: str = ""

    def requirement(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        marker = f" ; {self.markers}" if self.markers else ""
        return f"{self.name}{extras}{self.specifier}{marker}"


@dataclass(frozen=True, slots=True)
class Index:
    url: str
    # Other hosts ("host" or "host:port") this index serves its files from: the fetch stage's
    # egress proxy allows them too (PyPI's own file host is known without this).
    file_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    version: str
    dependencies: tuple[Dependency, ...]
    requires_python: str
    indexes: tuple[Index, ...]
    stubgen_fallback: str = "allow"
    stubgen_inspect_mode: bool = True
    strict_return_types: bool = True
    int_mode: str = "int64"
    async_mode: str = "per-call"
    require_attestations: bool = False
    allow_partial: bool = False
    free_threaded: bool = False
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    publish: Mapping[str, Any] = field(default_factory=dict)
    # import name -> aliases, from the project's .mochi files
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class _Reader:
    """Looks up keys with their line numbers, for messages that point at the problem."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, key: str, table: str | None = None) -> int:
        in_table = table is None
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if table is not None and stripped.startswith("["):
                in_table = stripped.strip("[]").strip() == table
                continue
            if in_table and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', line):
                return number
        return 0

    def error(self, message: str, key: str = "", table: str | None = None) -> ManifestError:
        line = self.line_of(key, table) if key else 0
        where = f"{self.path}:{line}" if line else str(self.path)
        name = f" [{table}] {key}" if table and key else (f" {key}" if key else "")
        return ManifestError(f"{where}:{name}: {message}")


_TOP = {"package", "python-dependencies", "python"}
_PYTHON = {
    "requires-python", "indexes", "stubgen", "strict-return-types", "int-mode", "async-mode",
    "require-attestations", "allow-partial", "free-threaded", "capabilities", "publish",
}  # fmt: skip
_HOST_PORT = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")
_CHOICES = {"int-mode": ("int64", "bigint"), "async-mode": ("per-call", "persistent")}
_BOOLS = ("strict-return-types", "require-attestations", "allow-partial", "free-threaded")


def _caret(spec: str) -> str:
    """Poetry/npm-style ``^2.31`` → ``>=2.31,<3``; ``^0.27`` → ``>=0.27,<0.28``."""
    parts = spec[1:].split(".")
    if not all(p.isdigit() for p in parts):
        raise InvalidSpecifier(spec)
    nums = [int(p) for p in parts]
    index = next((i for i, n in enumerate(nums) if n != 0), len(nums) - 1)
    upper = [*nums[:index], nums[index] + 1]
    return f">={spec[1:]},<{'.'.join(map(str, upper))}"


def _specifier(reader: _Reader, name: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise reader.error("version must be a string", name, "python-dependencies")
    spec = raw.strip()
    if spec in ("", "*"):
        return ""
    try:
        if spec.startswith("^"):
            spec = _caret(spec)
        return str(SpecifierSet(spec))
    except InvalidSpecifier:
        raise reader.error(
            f'{raw!r} is not a PEP 440 version specifier (e.g. ">=2.31,<3" or "^2.31")',
            name,
            "python-dependencies",
        ) from None


def _dependency(reader: _Reader, name: str, raw: object) -> Dependency:
    try:
        Requirement(name)
    except InvalidRequirement:
        raise reader.error("not a valid distribution name", name, "python-dependencies") from None
    extras: tuple[str, ...] = ()
    markers = ""
    if isinstance(raw, dict):
        unknown = set(raw) - {"version", "extras", "markers"}
        if unknown:
            raise reader.error(f"unknown field(s) {sorted(unknown)}", name, "python-dependencies")
        spec = _specifier(reader, name, raw.get("version", "*"))
        extras_raw = raw.get("extras", [])
        if not isinstance(extras_raw, list) or not all(isinstance(e, str) for e in extras_raw):
            raise reader.error("extras must be a list of strings", name, "python-dependencies")
        extras = tuple(sorted(canonicalize_name(e) for e in extras_raw))
        markers = raw.get("markers", "")
        if not isinstance(markers, str):
            raise reader.error("markers must be a string", name, "python-dependencies")
    else:
        spec = _specifier(reader, name, raw)
    return Dependency(canonicalize_name(name), spec, extras, markers)


def _python_table(reader: _Reader, table: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(table) - _PYTHON
    if unknown:
        key = sorted(unknown)[0]
        raise reader.error(f"unknown key (known: {', '.join(sorted(_PYTHON))})", key, "python")
    out: dict[str, Any] = {}
    for key in _BOOLS:
        if key in table:
            if not isinstance(table[key], bool):
                raise reader.error("must be true or false", key, "python")
            out[key] = table[key]
    for key, choices in _CHOICES.items():
        if key in table:
            if table[key] not in choices:
                raise reader.error(f"must be one of {', '.join(choices)}", key, "python")
            out[key] = table[key]
    if "requires-python" in table:
        try:
            out["requires-python"] = str(SpecifierSet(str(table["requires-python"])))
        except InvalidSpecifier:
            raise reader.error("not a PEP 440 specifier", "requires-python", "python") from None
    indexes = table.get("indexes", [{"url": DEFAULT_INDEX}])
    if not isinstance(indexes, list) or not indexes:
        raise reader.error("must be a non-empty list of { url = ... }", "indexes", "python")
    parsed = []
    for entry in indexes:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not re.match(r"^(https?|file)://", url):
            raise reader.error("each index needs an http(s):// or file:// url", "indexes", "python")
        if set(entry) - {"url", "file-hosts"}:
            raise reader.error(
                f"unknown key(s) {sorted(set(entry) - {'url', 'file-hosts'})} in an index "
                "(expected url and optionally file-hosts)",
                "indexes",
                "python",
            )
        hosts = entry.get("file-hosts", [])
        if not isinstance(hosts, list) or not all(
            isinstance(h, str) and _HOST_PORT.fullmatch(h) for h in hosts
        ):
            raise reader.error(
                'file-hosts must be a list of "host" or "host:port" names', "indexes", "python"
            )
        parsed.append(Index(url if url.endswith("/") else url + "/", tuple(hosts)))
    out["indexes"] = tuple(parsed)
    stubgen = table.get("stubgen", {})
    if not isinstance(stubgen, dict) or set(stubgen) - {"fallback", "inspect-mode"}:
        raise reader.error(
            'expects { fallback = "allow"|"deny", inspect-mode = bool }', "stubgen", "python"
        )
    if stubgen.get("fallback", "allow") not in ("allow", "deny"):
        raise reader.error('fallback must be "allow" or "deny"', "stubgen", "python")
    out["stubgen"] = stubgen
    caps = table.get("capabilities", {})
    if not isinstance(caps, dict):
        raise reader.error("must be a table", "capabilities", "python")
    for key, value in caps.items():
        if key not in CAPABILITIES:
            raise reader.error(
                f"unknown capability (known: {', '.join(CAPABILITIES)})", key, "python.capabilities"
            )
        if not isinstance(value, bool):
            raise reader.error("must be true or false", key, "python.capabilities")
    out["capabilities"] = caps
    publish = table.get("publish", {})
    if not isinstance(publish, dict):
        raise reader.error("must be a table", "publish", "python")
    out["publish"] = publish
    return out


def scan_imports(project: Path) -> dict[str, list[str]]:
    """``import python "NAME[@SPEC]" as ALIAS`` lines of every .mochi file: NAME -> [ALIAS…]."""
    found: dict[str, list[str]] = {}
    for path in sorted(project.rglob("*.mochi")):
        if "python_wrap" in path.parts:
            continue
        for line in path.read_text(errors="replace").splitlines():
            match = _IMPORT.match(line)
            if match:
                target = match.group("target")
                name = target.split("@", 1)[0].strip()
                if not _MODULE.fullmatch(name):
                    raise ManifestError(
                        f"{path}: `import python {target!r}` does not name a Python module "
                        '(dotted identifiers, e.g. "lxml.etree")'
                    )
                alias = match.group("alias") or name.split(".")[0]
                aliases = found.setdefault(name, [])
                if alias not in aliases:
                    aliases.append(alias)
    return found


def _check_import_specs(project: Path, deps: tuple[Dependency, ...]) -> None:
    """An ``import python "NAME@SPEC"`` must agree with the manifest's entry for NAME."""
    by_name = {d.name: d for d in deps}
    for path in sorted(project.rglob("*.mochi")):
        if "python_wrap" in path.parts:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            match = _IMPORT.match(line)
            if not match or "@" not in match.group("target"):
                continue
            name, spec = match.group("target").split("@", 1)
            dep = by_name.get(canonicalize_name(name.strip()))
            try:
                wanted = str(SpecifierSet(spec.strip()))
            except InvalidSpecifier:
                raise ManifestError(
                    f"{path}:{number}: {spec!r} is not a version specifier"
                ) from None
            if dep is None or SpecifierSet(dep.specifier) != SpecifierSet(wanted):
                have = f"{dep.specifier or '*'}" if dep else "no entry"
                raise ManifestError(
                    f"{path}:{number}: imports {name.strip()}@{wanted} but mochi.toml has "
                    f"{have} for it; make them agree (e.g. `mochi-pybridge add "
                    f"'{name.strip()}{wanted}'`)"
                )


def load_manifest(project: Path) -> Manifest:
    path = project / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no mochi.toml here (is --project right?)") from None
    reader = _Reader(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - _TOP
    if unknown:
        key = sorted(unknown)[0]
        raise reader.error(f"unknown table (known: {', '.join(sorted(_TOP))})", key)
    package = data.get("package", {})
    if not isinstance(package.get("name"), str):
        raise reader.error('[package] needs name = "..."', "name", "package")
    deps_raw = data.get("python-dependencies", {})
    if not isinstance(deps_raw, dict):
        raise reader.error("must be a table", "python-dependencies")
    deps = tuple(
        sorted((_dependency(reader, n, v) for n, v in deps_raw.items()), key=lambda d: d.name)
    )
    python = _python_table(reader, data.get("python", {}))
    here = f">={sys.version_info.major}.{sys.version_info.minor}"
    aliases = scan_imports(project)
    _check_import_specs(project, deps)
    return Manifest(
        path=path,
        name=package["name"],
        version=str(package.get("version", "0.0.0")),
        dependencies=deps,
        requires_python=python.get("requires-python", here),
        indexes=python["indexes"],
        stubgen_fallback=python["stubgen"].get("fallback", "allow"),
        stubgen_inspect_mode=bool(python["stubgen"].get("inspect-mode", True)),
        strict_return_types=python.get("strict-return-types", True),
        int_mode=python.get("int-mode", "int64"),
        async_mode=python.get("async-mode", "per-call"),
        require_attestations=python.get("require-attestations", False),
        allow_partial=python.get("allow-partial", False),
        free_threaded=python.get("free-threaded", False),
        capabilities=python["capabilities"],
        publish=python["publish"],
        aliases={k: tuple(v) for k, v in aliases.items()},
    )
