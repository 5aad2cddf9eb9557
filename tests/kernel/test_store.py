"""The content-addressed store: atomic, verified on read, safe to share between processes."""

from __future__ import annotations

import errno
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from mochi_pybridge.kernel.store import CorruptBlob, Store, atomic_write, cache_key, digest_bytes


def test_Store_put_get_roundtrip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.put(b"wheel bytes")
    assert digest == digest_bytes(b"wheel bytes")
    assert store.has(digest)
    assert store.get(digest) == b"wheel bytes"
    assert store.put(b"wheel bytes") == digest  # idempotent


def test_Store_detects_and_removes_a_corrupted_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.put(b"original")
    path = tmp_path / "blobs" / digest[:2] / digest[2:]
    path.write_bytes(b"tampered")
    with pytest.raises(CorruptBlob, match="corrupted"):
        store.get(digest)
    assert not store.has(digest)  # gone: the next run refetches
    store.put(b"original")
    assert store.get(digest) == b"original"


def test_Store_result_cache_is_invalidated_by_a_corrupt_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.put(b"stub tree")
    key = cache_key(stage="stubgen", wheel="abc", mypy="2.4.1")
    store.put_result(key, {"files": ["a.pyi"]}, [digest])
    assert store.get_result(key) == {"files": ["a.pyi"]}
    (tmp_path / "blobs" / digest[:2] / digest[2:]).write_bytes(b"x")
    # Each process hashes a blob once; the next lock (a new Store) sees the damage.
    assert Store(tmp_path).get_result(key) is None
    assert not (tmp_path / "blobs" / digest[:2] / digest[2:]).exists()


def test_cache_key_depends_on_every_part_and_not_on_order() -> None:
    assert cache_key(a=1, b=2) == cache_key(b=2, a=1)
    assert cache_key(a=1, b=2) != cache_key(a=1, b=3)
    assert cache_key(a=1) != cache_key(a=1, b=None)


def test_Store_rejects_non_digest_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="digest"):
        Store(tmp_path).get("../../etc/passwd")


WRITE_PAST_THE_LIMIT = """
import resource, sys
from pathlib import Path
from mochi_pybridge.kernel.store import atomic_write
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    atomic_write(Path(sys.argv[1]), b"new" * 100_000)
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    """A real failing write (the file-size limit hits mid-write, EFBIG): the old file stays
    whole and no temporary file is left behind."""
    target = tmp_path / "mochi.lock"
    atomic_write(target, b"old")
    done = subprocess.run([sys.executable, "-c", WRITE_PAST_THE_LIMIT, str(target)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.split() == ["OSError", str(errno.EFBIG)]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["mochi.lock"]


def _writer(root: str, n: int) -> None:
    store = Store(Path(root))
    for i in range(200):
        store.put(f"blob {i % 20}".encode() * 1000)
        store.put(f"own {n} {i}".encode())


def test_Store_two_processes_share_one_cache(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n)) for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(tmp_path)
    for i in range(20):
        data = f"blob {i}".encode() * 1000
        assert store.get(digest_bytes(data)) == data
    leftovers = [p for p in (tmp_path / "blobs").rglob("*.tmp")]
    assert leftovers == []
