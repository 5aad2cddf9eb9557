"""Archive attacks against the hardened unpacker: each refused, nothing written."""

from __future__ import annotations

import base64
import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from mochi_pybridge.sandbox.unpack import UnpackLimits, UnsafeArchive, unpack_wheel


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(
    path: Path,
    files: dict[str, bytes],
    *,
    record: str | None = None,
    extra: list[zipfile.ZipInfo] | None = None,
    compress: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A wheel with ``files`` plus a truthful RECORD (unless ``record`` overrides it)."""
    if record is None:
        lines = [record_line(n, d) for n, d in files.items()]
        lines.append("demo-1.0.dist-info/RECORD,,")
        record = "\n".join(lines) + "\n"
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for info in extra or []:
            zf.writestr(info, b"/etc/passwd")
        zf.writestr("demo-1.0.dist-info/RECORD", record)
    return path


GOOD = {
    "demo/__init__.py": b"x = 1\n",
    "demo/py.typed": b"",
    "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
}


def test_unpack_wheel_extracts_an_honest_wheel(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", GOOD)
    target = tmp_path / "t"
    target.mkdir()
    names = unpack_wheel(wheel, target)
    assert "demo/__init__.py" in names
    assert (target / "demo" / "__init__.py").read_bytes() == b"x = 1\n"


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({**GOOD, "../evil.py": b"x"}, None, "escaping"),
        ({**GOOD, "demo/../../evil.py": b"x"}, None, "escaping"),
        ({**GOOD, "/etc/evil.py": b"x"}, None, "absolute"),
        ({**GOOD, "demo\\..\\evil.py": b"x"}, None, "backslash"),
        ({**GOOD, "C:/evil.py": b"x"}, None, "escaping"),
        (GOOD, [symlink_member("demo/link.py")], "symlink"),
    ],
    ids=["zip-slip", "zip-slip-nested", "absolute", "backslash", "drive", "symlink-member"],
)
def test_unpack_wheel_refuses_path_attacks(
    tmp_path: Path, files: dict[str, bytes], extra: list[zipfile.ZipInfo] | None, message: str
) -> None:
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, extra=extra)
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match=message):
        unpack_wheel(wheel, target)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "evil.py").exists()


def test_unpack_wheel_refuses_a_decompression_bomb(tmp_path: Path) -> None:
    bomb = b"\0" * (50 * 1024 * 1024)
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {**GOOD, "demo/bomb.bin": bomb})
    assert wheel.stat().st_size < 1024 * 1024
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="bomb"):
        unpack_wheel(wheel, target)
    assert list(target.iterdir()) == []


def test_unpack_wheel_refuses_too_many_members(tmp_path: Path) -> None:
    files = {**GOOD, **{f"demo/m{i}.py": b"" for i in range(50)}}
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", files)
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="members"):
        unpack_wheel(wheel, target, UnpackLimits(max_members=20))


def test_unpack_wheel_refuses_duplicate_members(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    make_wheel(wheel, GOOD)
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(wheel, "a") as zf,
    ):
        zf.writestr("demo/__init__.py", b"evil = 1\n")
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="duplicate"):
        unpack_wheel(wheel, target)


@pytest.mark.parametrize(
    "record",
    [
        # the hash of __init__.py is wrong
        "demo/__init__.py,sha256=AAAA,6\ndemo/py.typed,,\ndemo-1.0.dist-info/METADATA,,\n",
        # a file in the archive is not listed
        record_line("demo/__init__.py", GOOD["demo/__init__.py"]) + "\n",
        # RECORD lists a file the archive lacks
        "\n".join(record_line(n, d) for n, d in GOOD.items()) + "\ndemo/ghost.py,sha256=x,1\n",
        # malformed row
        "a,b\n",
    ],
    ids=["wrong-hash", "unlisted-file", "ghost-file", "malformed"],
)
def test_unpack_wheel_refuses_a_lying_record(tmp_path: Path, record: str) -> None:
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", GOOD, record=record)
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="RECORD"):
        unpack_wheel(wheel, target)
    assert list(target.iterdir()) == []


def test_unpack_wheel_refuses_garbage(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 not really a zip")
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="not a valid zip"):
        unpack_wheel(wheel, target)


def test_unpack_wheel_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    """If the target already held a link (it must be empty, but belt and braces)."""
    target = tmp_path / "t"
    target.mkdir()
    (target / "demo").symlink_to(tmp_path)
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", GOOD)
    with pytest.raises(ValueError, match="not empty"):
        unpack_wheel(wheel, target)
