"""Output intake: what a stage leaves in its output directory is hostile input to the kernel.

Only regular files with expected names and suffixes, within count, depth and size limits, are
accepted; symlinks, hard links, FIFOs, sockets and devices are refused, and no link is ever
followed (every open is relative to an ``O_NOFOLLOW`` directory descriptor). Intake runs after
the stage's processes are all dead, so nothing changes the tree while it is read.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from mochi_pybridge.kernel.errors import PybridgeError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


class IntakeError(PybridgeError):
    """A stage's output broke the intake rules; nothing of it was accepted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeRules:
    suffixes: frozenset[str] | None  # accepted file suffixes, e.g. {".pyi"}; None: any
    max_files: int = 10_000
    max_depth: int = 32
    max_file_size: int = 64 * 1024 * 1024
    max_total_size: int = 512 * 1024 * 1024
    # False: check only, return no bytes (large files are then streamed into the store).
    read_data: bool = True


@dataclass(frozen=True, slots=True)
class AcceptedFile:
    path: PurePosixPath  # relative to the output directory
    data: bytes  # empty when the rules say read_data=False
    sha256: str  # "" when not read
    size: int


def _open_dir_at(parent_fd: int | None, name: str) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(name, flags, dir_fd=parent_fd)


def intake(out_dir: str | os.PathLike[str], rules: IntakeRules) -> list[AcceptedFile]:
    """Read and check every file under ``out_dir``; IntakeError on the first violation."""
    root_fd = _open_dir_at(None, os.fspath(out_dir))
    try:
        accepted: list[AcceptedFile] = []
        total = 0
        for rel, data, size in _walk(root_fd, PurePosixPath(), 1, rules):
            total += size
            if total > rules.max_total_size:
                raise IntakeError(f"stage output exceeds {rules.max_total_size} bytes in total")
            if len(accepted) >= rules.max_files:
                raise IntakeError(f"stage output has more than {rules.max_files} files")
            digest = hashlib.sha256(data).hexdigest() if rules.read_data else ""
            accepted.append(AcceptedFile(rel, data, digest, size))
        return sorted(accepted, key=lambda f: f.path)
    finally:
        os.close(root_fd)


def _walk(
    dir_fd: int, rel: PurePosixPath, depth: int, rules: IntakeRules
) -> Iterator[tuple[PurePosixPath, bytes, int]]:
    if depth > rules.max_depth:
        raise IntakeError(f"stage output nests deeper than {rules.max_depth} directories")
    for entries, name in enumerate(sorted(os.listdir(dir_fd)), start=1):
        if entries > rules.max_files:
            raise IntakeError(f"stage output has more than {rules.max_files} entries")
        path = rel / name
        if not _NAME.fullmatch(name):
            raise IntakeError(f"stage output has a file with a refused name: {path!s:.200}")
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            child = _open_dir_at(dir_fd, name)
            try:
                yield from _walk(child, path, depth + 1, rules)
            finally:
                os.close(child)
        elif stat.S_ISREG(st.st_mode):
            yield path, _read_regular(dir_fd, name, path, st, rules), st.st_size
        else:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
            raise IntakeError(f"stage output contains a {kind}: {path}")


def _read_regular(
    dir_fd: int, name: str, path: PurePosixPath, st: os.stat_result, rules: IntakeRules
) -> bytes:
    if rules.suffixes is not None and PurePosixPath(name).suffix not in rules.suffixes:
        raise IntakeError(f"stage output has an unexpected file type: {path}")
    if st.st_nlink != 1:
        raise IntakeError(f"stage output contains a hard link: {path}")
    # st_size is the apparent size, so a sparse file counts at its full length.
    if st.st_size > rules.max_file_size:
        raise IntakeError(
            f"stage output file {path} is {st.st_size} bytes (limit {rules.max_file_size})"
        )
    if not rules.read_data:
        return b""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        again = os.fstat(fd)
        if (again.st_ino, again.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(
            again.st_mode
        ):
            raise IntakeError(f"stage output file {path} changed while being read")
        chunks = []
        remaining = rules.max_file_size + 1
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 20))):
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > rules.max_file_size:
            raise IntakeError(f"stage output file {path} grew past the limit")
        return data
    finally:
        os.close(fd)
