"""The hardened archive unpacker: the only way a wheel (or sdist) becomes files on disk.

Refused with a clear error: absolute paths, ``..`` components, backslashes and NULs in names,
duplicate names, symlink or device members, more than ``max_members`` members, a member or a
total over the size limits, a compression ratio past ``max_ratio`` (bombs), and, for wheels,
a RECORD that does not match the archive. Sizes are counted while decompressing; the
archive's own headers are not trusted.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mochi_pybridge.kernel.errors import PybridgeError


class UnsafeArchive(PybridgeError):
    """The archive tried something the unpacker refuses; nothing was extracted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackLimits:
    max_members: int = 20_000
    max_member_size: int = 256 * 1024 * 1024
    max_total_size: int = 1024 * 1024 * 1024
    max_ratio: int = 200  # uncompressed bytes per compressed byte, per member
    max_name_length: int = 512


def _safe_name(name: str, limits: UnpackLimits) -> PurePosixPath:
    if len(name) > limits.max_name_length:
        raise UnsafeArchive(f"member name longer than {limits.max_name_length}: {name[:80]!r}...")
    if "\\" in name or "\x00" in name:
        raise UnsafeArchive(f"member name with a backslash or NUL: {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise UnsafeArchive(f"member with an absolute path: {name!r}")
    if any(part in ("..", "") for part in name.rstrip("/").split("/")) or ":" in path.parts[0]:
        raise UnsafeArchive(f"member escaping the target directory: {name!r}")
    return path


def _member_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    # Many writers store permission bits only (no file type): that is a regular file.
    file_type = stat.S_IFMT(mode)
    if file_type and file_type != stat.S_IFREG:
        return "symlink" if file_type == stat.S_IFLNK else "special"
    return "file"


def unpack_wheel(wheel: Path, target: Path, limits: UnpackLimits = UnpackLimits()) -> list[str]:
    """Extract ``wheel`` into the empty directory ``target``; returns the member names."""
    if os.listdir(target):
        raise ValueError(f"unpack target {target} is not empty")
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"{wheel.name} is not a valid zip archive: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise UnsafeArchive(
                f"{wheel.name} has {len(members)} members (limit {limits.max_members})"
            )
        seen: set[str] = set()
        files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        for info in members:
            path = _safe_name(info.filename, limits)
            key = str(path).rstrip("/").lower()
            if key in seen:
                raise UnsafeArchive(f"{wheel.name} has a duplicate member {info.filename!r}")
            seen.add(key)
            kind = _member_kind(info)
            if kind in ("symlink", "special"):
                raise UnsafeArchive(f"{wheel.name} has a {kind} member {info.filename!r}")
            if kind == "file":
                files.append((info, path))
        contents = _read_all(archive, files, wheel.name, limits)
    _check_record(wheel.name, contents)
    for path, data in contents.items():
        _write_new(target, path, data)
    return sorted(str(p) for p in contents)


def _read_all(
    archive: zipfile.ZipFile,
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    label: str,
    limits: UnpackLimits,
) -> dict[PurePosixPath, bytes]:
    total = 0
    out: dict[PurePosixPath, bytes] = {}
    for info, path in files:
        cap = min(limits.max_member_size, max(info.compress_size, 1) * limits.max_ratio)
        buf = io.BytesIO()
        try:
            with archive.open(info) as member:
                while chunk := member.read(1 << 16):
                    buf.write(chunk)
                    if buf.tell() > cap:
                        raise UnsafeArchive(
                            f"{label}: member {info.filename!r} decompresses past "
                            f"{cap} bytes (bomb or over the size limit)"
                        )
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise UnsafeArchive(f"{label}: member {info.filename!r} is corrupt: {exc}") from None
        total += buf.tell()
        if total > limits.max_total_size:
            raise UnsafeArchive(f"{label} unpacks past {limits.max_total_size} bytes")
        out[path] = buf.getvalue()
    return out


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_record(label: str, contents: dict[PurePosixPath, bytes]) -> None:
    """Every file is listed in RECORD with the right hash and size, and nothing else is."""
    records = [
        p
        for p in contents
        if p.name == "RECORD" and p.parent.name.endswith(".dist-info") and len(p.parts) == 2
    ]
    if len(records) != 1:
        raise UnsafeArchive(f"{label} has {len(records)} .dist-info/RECORD files, not one")
    record_path = records[0]
    listed: dict[str, tuple[str, str]] = {}
    try:
        text = contents[record_path].decode("utf-8")
        for row in csv.reader(io.StringIO(text)):
            if not row:
                continue
            if len(row) != 3:
                raise UnsafeArchive(f"{label}: malformed RECORD row {row!r:.120}")
            listed[row[0]] = (row[1], row[2])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UnsafeArchive(f"{label}: unreadable RECORD: {exc}") from None
    unsigned = {
        str(record_path),
        f"{record_path.parent}/RECORD.jws",
        f"{record_path.parent}/RECORD.p7s",
    }
    for path, data in contents.items():
        name = str(path)
        if name in unsigned:
            continue
        if name not in listed:
            raise UnsafeArchive(f"{label}: {name} is not listed in RECORD")
        digest, size = listed.pop(name)
        if digest != _record_hash(data) or (size and size != str(len(data))):
            raise UnsafeArchive(f"{label}: {name} does not match its RECORD hash or size")
    missing = sorted(set(listed) - unsigned)
    if missing:
        raise UnsafeArchive(f"{label}: RECORD lists files the archive lacks: {missing[:5]}")


def _write_new(target: Path, rel: PurePosixPath, data: bytes) -> None:
    """Create ``target/rel`` (and its parents) without following any link."""
    dir_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in rel.parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=dir_fd)
            child = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
            )
            os.close(dir_fd)
            dir_fd = child
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(rel.parts[-1], flags, 0o644, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
