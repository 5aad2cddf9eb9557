"""Build a Mochi project's Python package into an sdist and a wheel (SPEC §8).

Core metadata 2.4 with a PEP 639 ``License-Expression``; the wheel is ``py3-none-any``, or
``cp311-abi3-PLATFORM`` when the package ships a limited-API extension (``*.abi3.so``); both
carry ``py.typed``; the sdist also carries mochi.toml and mochi.lock. Byte-for-byte
reproducible: entries sorted, timestamps from ``SOURCE_DATE_EPOCH``, fixed modes and owners,
gzip header without a time. Metadata is validated before anything is written.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import sysconfig
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mochi_pybridge import __version__
from mochi_pybridge.kernel.errors import PybridgeError
from mochi_pybridge.kernel.manifest import Manifest

_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
DEFAULT_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can hold


class PublishMetadataError(PybridgeError):
    """[python.publish] or the package it points at is not publishable as it stands."""


@dataclass(frozen=True)
class PublishMetadata:
    name: str  # as written (PEP 503-normalised for file names)
    version: str
    summary: str
    license_expression: str
    requires_python: str
    dependencies: tuple[str, ...]
    package_dir: Path

    @property
    def file_stem(self) -> str:
        return f"{canonicalize_name(self.name).replace('-', '_')}-{self.version}"


def validate(manifest: Manifest, project: Path) -> PublishMetadata:
    """Every problem at once, each with its key, before anything is built."""
    publish = dict(manifest.publish)
    problems: list[str] = []
    name = str(publish.get("distribution-name", ""))
    if not _NAME.match(name):
        problems.append(f"distribution-name {name!r} is not a valid distribution name")
    version = str(publish.get("version", manifest.version))
    try:
        version = str(Version(version))
    except InvalidVersion:
        problems.append(f"version {version!r} is not a PEP 440 version")
    summary = str(publish.get("summary", ""))
    if not summary or "\n" in summary or len(summary) > 512:
        problems.append("summary must be one line of 1 to 512 characters")
    license_expression = str(publish.get("license-expression", ""))
    try:
        license_expression = canonicalize_license_expression(license_expression)
    except InvalidLicenseExpression:
        problems.append(f"license-expression {license_expression!r} is not a valid SPDX expression")
    try:
        requires_python = str(SpecifierSet(manifest.requires_python))
    except InvalidSpecifier:
        requires_python = ""
        problems.append("requires-python is not a PEP 440 specifier")
    dependencies = []
    for dep in manifest.dependencies:
        try:
            dependencies.append(str(Requirement(dep.requirement())))
        except InvalidRequirement:
            problems.append(f"dependency {dep.requirement()!r} is not a valid requirement")
    package_dir = project / str(publish.get("package-dir", ""))
    if not publish.get("package-dir") or not (package_dir / "__init__.py").is_file():
        problems.append(f"package-dir {package_dir} must be a Python package (with __init__.py)")
    if problems:
        raise PublishMetadataError(
            f"{manifest.path} [python.publish]:\n  - " + "\n  - ".join(problems)
        )
    return PublishMetadata(
        name,
        version,
        summary,
        license_expression,
        requires_python,
        tuple(sorted(dependencies)),
        package_dir,
    )


def _epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    return max(int(raw), DEFAULT_EPOCH) if raw and raw.isdigit() else DEFAULT_EPOCH


def core_metadata(meta: PublishMetadata) -> str:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {meta.name}",
        f"Version: {meta.version}",
        f"Summary: {meta.summary}",
        f"License-Expression: {meta.license_expression}",
        f"Requires-Python: {meta.requires_python}",
        *[f"Requires-Dist: {d}" for d in meta.dependencies],
    ]
    return "\n".join(lines) + "\n"


def _package_files(meta: PublishMetadata) -> list[tuple[str, bytes]]:
    root = meta.package_dir
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise PublishMetadataError(f"{path} is a symlink; a distribution holds files only")
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        files.append((f"{root.name}/{path.relative_to(root).as_posix()}", path.read_bytes()))
    if not any(name.endswith("/py.typed") for name, _ in files):
        files.append((f"{root.name}/py.typed", b""))
    return sorted(files)


def wheel_tag(files: list[tuple[str, bytes]]) -> tuple[str, bool]:
    """(tag, purelib): abi3 when a limited-API extension is shipped."""
    if any(name.endswith(".abi3.so") for name, _ in files):
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        return f"cp311-abi3-{platform}", False
    if any(name.endswith((".so", ".pyd")) for name, _ in files):
        raise PublishMetadataError("the package ships a non-abi3 extension; only abi3 is supported")
    return "py3-none-any", True


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(meta: PublishMetadata, out: Path) -> Path:
    files = _package_files(meta)
    tag, purelib = wheel_tag(files)
    info = f"{meta.file_stem}.dist-info"
    files.append((f"{info}/METADATA", core_metadata(meta).encode()))
    files.append(
        (
            f"{info}/WHEEL",
            (
                f"Wheel-Version: 1.0\nGenerator: mochi-pybridge {__version__}\n"
                f"Root-Is-Purelib: {'true' if purelib else 'false'}\nTag: {tag}\n"
            ).encode(),
        )
    )
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files)
    files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    stamp = time.gmtime(_epoch())[:6]
    path = out / f"{meta.file_stem}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in files:  # dist-info last, as installers expect
            entry = zipfile.ZipInfo(name, date_time=stamp)
            entry.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return path


def build_sdist(meta: PublishMetadata, project: Path, out: Path) -> Path:
    base = meta.file_stem
    files = [(f"{base}/{name}", data) for name, data in _package_files(meta)]
    files.append((f"{base}/PKG-INFO", core_metadata(meta).encode()))
    for extra in ("mochi.toml", "mochi.lock"):
        if (project / extra).is_file():
            files.append((f"{base}/{extra}", (project / extra).read_bytes()))
    deps = ", ".join(f'"{d}"' for d in meta.dependencies)
    files.append(
        (
            f"{base}/pyproject.toml",
            (
                '[build-system]\nrequires = ["flit_core>=3.11,<4"]\n'
                'build-backend = "flit_core.buildapi"\n\n'
                f'[project]\nname = "{meta.name}"\nversion = "{meta.version}"\n'
                f'description = "{meta.summary}"\nlicense = "{meta.license_expression}"\n'
                f'requires-python = "{meta.requires_python}"\ndependencies = [{deps}]\n\n'
                f'[tool.flit.module]\nname = "{meta.package_dir.name}"\n'
            ).encode(),
        )
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files):
            entry = tarfile.TarInfo(name)
            entry.size, entry.mtime, entry.mode = len(data), _epoch(), 0o644
            entry.uid = entry.gid = 0
            entry.uname = entry.gname = ""
            tar.addfile(entry, io.BytesIO(data))
    path = out / f"{base}.tar.gz"
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(buffer.getvalue())
    return path
