"""Output intake on directories the test plants directly (the sandboxed versions are in
test_hostile.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mochi_pybridge.sandbox.intake import IntakeError, IntakeRules, intake
from mochi_pybridge.sandbox.logs import CappedBuffer, strip_control

RULES = IntakeRules(suffixes=frozenset({".pyi", ".json"}), max_files=5, max_depth=3,
                    max_file_size=100, max_total_size=250)  # fmt: skip


def test_intake_accepts_regular_files_sorted_with_hashes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.pyi").write_text("b")
    (tmp_path / "a.json").write_text("{}")
    files = intake(tmp_path, RULES)
    assert [str(f.path) for f in files] == ["a.json", "pkg/b.pyi"]
    assert files[1].data == b"b"
    assert len(files[1].sha256) == 64


def hardlink(first: Path, second: Path) -> None:
    first.write_text("a")
    os.link(first, second)


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (lambda d: (d / "x.pyi").symlink_to("/etc/passwd"), "symlink"),
        (lambda d: os.mkfifo(d / "x.pyi"), "special"),
        (lambda d: hardlink(d / "a.pyi", d / "b.pyi"), "hard link"),
        (lambda d: (d / "x.so").write_text("a"), "unexpected file type"),
        (lambda d: (d / "x.pyi").write_text("a" * 101), "bytes"),
        (lambda d: [(d / f"{i}.pyi").write_text("a") for i in range(6)], "more than 5"),
        (lambda d: [(d / f"{i}.pyi").write_text("a" * 90) for i in range(3)], "in total"),
        (lambda d: (d / "a" / "b" / "c").mkdir(parents=True), "deeper"),
        (lambda d: (d / "\x1b[2J.pyi").write_text("a"), "refused name"),
        (lambda d: (d / ".hidden.pyi").write_text("a"), "refused name"),
    ],
    ids=[
        "symlink",
        "fifo",
        "hardlink",
        "suffix",
        "big",
        "count",
        "total",
        "depth",
        "escape",
        "dotfile",
    ],
)
def test_intake_refuses(tmp_path: Path, plant: object, message: str) -> None:
    plant(tmp_path)  # type: ignore[operator]
    with pytest.raises(IntakeError, match=message):
        intake(tmp_path, RULES)


def test_intake_counts_sparse_files_at_their_apparent_size(tmp_path: Path) -> None:
    with (tmp_path / "x.pyi").open("wb") as f:
        f.truncate(1 << 40)  # 1 TiB, no blocks
    with pytest.raises(IntakeError, match="bytes"):
        intake(tmp_path, RULES)


def test_intake_root_must_not_be_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        intake(tmp_path / "link", RULES)


def test_strip_control_removes_terminal_sequences() -> None:
    text = "a\x1b[31mb\x1b[0m\x1b]0;title\x07c\x1bP+q\x1b\\d\re\x08f\tg\nh\x9bi"
    assert strip_control(text) == "abcdef\tg\nhi"


def test_CappedBuffer_keeps_the_head_and_counts_the_rest() -> None:
    buf = CappedBuffer(cap=4)
    buf.feed(b"abc")
    buf.feed(b"defg")
    assert buf.total == 7
    assert buf.truncated
    assert buf.text().startswith("abcd\n[... 3 more bytes dropped]")
