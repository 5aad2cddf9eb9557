"""The content-addressed store under the cache directory.

Blobs are keyed by their BLAKE3 digest and written atomically (temporary file in the same
directory, fsync, rename), so two ``lock`` processes sharing a cache can race without harm:
both write the same bytes under the same name. Reads verify the digest: a corrupted blob is
removed and reported, never returned. Stage results are cached under a key made of everything
that determines them (see ``cache_key``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3

from mochi_pybridge.kernel.errors import PybridgeError

_HEX = frozenset("0123456789abcdef")


class CorruptBlob(PybridgeError):
    """A blob's bytes no longer match its digest; it has been removed from the store."""


def digest_bytes(data: bytes) -> str:
    return str(blake3.blake3(data).hexdigest())


def digest_file(path: Path) -> str:
    h = blake3.blake3()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return str(h.hexdigest())


@functools.cache
def code_identity(*modules: str) -> str:
    """A digest of the source of ``modules`` (and of packages' files): a stage's result is
    only reused by the code that produced it, so a fix to a runner invalidates its cache."""
    h = blake3.blake3()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no source for {name}")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            h.update(path.read_bytes())
    return str(h.hexdigest())


def cache_key(**parts: Any) -> str:
    """A key over canonical JSON of ``parts`` (input hashes, tool versions, policy, options)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return digest_bytes(canonical.encode())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.results = root / "results"
        self._verified: set[str] = set()  # digests hashed and found intact by this process

    def _blob_path(self, digest: str) -> Path:
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise ValueError(f"not a BLAKE3 hex digest: {digest!r:.80}")
        return self.blobs / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        digest = digest_bytes(data)
        path = self._blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def put_file(self, path: Path) -> tuple[str, str, int]:
        """Copy a file into the store, hashing as it goes: (blake3, sha256, size).

        ``path`` must not be a symlink (opened with O_NOFOLLOW)."""
        import hashlib

        self.blobs.mkdir(parents=True, exist_ok=True)
        b3, sha, size = blake3.blake3(), hashlib.sha256(), 0
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        tmp_fd, tmp = tempfile.mkstemp(prefix=".incoming.", suffix=".tmp", dir=self.blobs)
        try:
            with os.fdopen(fd, "rb") as src, os.fdopen(tmp_fd, "wb") as dst:
                while chunk := src.read(1 << 20):
                    b3.update(chunk)
                    sha.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            digest = str(b3.hexdigest())
            final = self._blob_path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest, sha.hexdigest(), size

    def has(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def get(self, digest: str) -> bytes:
        """The blob's bytes, verified; CorruptBlob (and the blob removed) if they changed."""
        path = self._blob_path(digest)
        data = path.read_bytes()
        if digest_bytes(data) != digest:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise CorruptBlob(f"cache blob {digest[:16]}… was corrupted and has been removed")
        return data

    def path_of(self, digest: str) -> Path:
        """The verified blob's path (for handing a file to a stage read-only)."""
        if not self._verify(digest):
            raise CorruptBlob(f"cache blob {digest[:16]}… is missing or was corrupted")
        return self._blob_path(digest)

    def _verify(self, digest: str) -> bool:
        """Hash the blob once per process (a lock asks about the same wheels several times);
        a corrupted one is removed, so the next fetch replaces it."""
        if digest in self._verified:
            return True
        try:
            path = self._blob_path(digest)
            good = digest_file(path) == digest
        except (OSError, ValueError):
            return False
        if not good:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return False
        self._verified.add(digest)
        return True

    def get_result(self, key: str) -> Mapping[str, Any] | None:
        """A cached stage result, if every blob it refers to is still present and intact."""
        path = self.results / key[:2] / f"{key}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        for digest in record.get("blobs", []):
            if not self._verify(digest):
                return None
        value = record.get("value")
        return value if isinstance(value, dict) else None

    def put_result(self, key: str, value: Mapping[str, Any], blobs: list[str]) -> None:
        record = {"value": value, "blobs": sorted(blobs)}
        data = json.dumps(record, sort_keys=True).encode()
        atomic_write(self.results / key[:2] / f"{key}.json", data)
