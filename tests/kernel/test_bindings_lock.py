"""`lock` produces bindings for every direct dependency: real stub ladder, real stubgen in its
sandbox, real synthesis and compile; the wrappers import in a fresh interpreter next to the
locked packages (installed from pylock.toml) and call the real code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mochi_pybridge.kernel.lockfile import parse_lock

from ..support.index import IndexState, serve_index
from ..support.mochi_grammar import parse
from ..support.wheels import build_wheel
from .test_lock import cli, write_project

TYPED = {
    "typedpkg/__init__.py": (
        "def greet(name: str) -> str:\n    return 'hello ' + name\n\n"
        "def liar() -> int:\n    return 'surprise'  # the stub says int\n\n"
        "def load(type: str) -> list[str]:\n    return [type]\n"
    ),
    "typedpkg/py.typed": "",
}
UNTYPED = {"untypedpkg/__init__.py": "def double(x):\n    return x * 2\n"}
NET_AT_IMPORT = {
    "netimport/__init__.py": (
        "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)\n"
        "def f(x):\n    return x\n"
    )
}
BOOM_AT_IMPORT = {"boomimport/__init__.py": "raise RuntimeError('I refuse to be imported')\n"}
TRIO_USER = {
    "triouser/__init__.py": "import trio\n\nasync def nap() -> None:\n    await trio.sleep(0)\n",
    "triouser/py.typed": "",
}
SUBPROC = {
    "subproc/__init__.py": "import subprocess\n\ndef run() -> str:\n    return 'x'\n",
    "subproc/py.typed": "",
}


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, IndexState]]:
    files = tmp_path / "files"
    files.mkdir()
    for name, content in [
        ("typedpkg", TYPED),
        ("untypedpkg", UNTYPED),
        ("netimport", NET_AT_IMPORT),
        ("boomimport", BOOM_AT_IMPORT),
        ("triouser", TRIO_USER),
        ("subproc", SUBPROC),
    ]:
        build_wheel(files, name, "1.0", files=content)
    build_wheel(
        files,
        "growing",
        "1.0",
        files={"growing/__init__.py": "def v() -> int:\n    return 1\n", "growing/py.typed": ""},
    )
    build_wheel(
        files,
        "growing",
        "2.0",
        files={
            "growing/__init__.py": "import socket\n\ndef v() -> int:\n    return 2\n",
            "growing/py.typed": "",
        },
    )
    with serve_index(files) as served:
        yield served


def manifest_extra(project: Path, text: str) -> None:
    path = project / "mochi.toml"
    path.write_text(path.read_text().replace("[python]\n", f"[python]\n{text}\n"))


def install_and_call(tmp_path: Path, project: Path, alias: str, code: str) -> object:
    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    if not venv.exists():
        subprocess.run([uv, "venv", "-q", str(venv)], check=True)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(project / "pylock.toml"),
            ],
            check=True,
        )
    program = (
        f"import sys, json\nsys.path.insert(0, {str(project / 'python_wrap' / alias)!r})\n"
        + code
        + "\nprint(json.dumps(result))\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_lock_binds_typed_and_untyped_packages_and_the_wrappers_work(
    tmp_path: Path, index: tuple[str, IndexState]
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(
        project,
        url,
        'typedpkg = "*"\nuntypedpkg = "*"',
        'import python "typedpkg" as typed\nimport python "untypedpkg" as untyped\n',
    )
    manifest_extra(project, "allow-partial = true")
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 0, done.stderr
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    typed = next(p for p in lock.packages if p.name == "typedpkg")
    untyped = next(p for p in lock.packages if p.name == "untypedpkg")
    assert typed.extra["stub-provenance"] == "inline"
    assert untyped.extra["stub-provenance"] == "stubgen"
    for pkg in (typed, untyped):
        assert len(pkg.extra["stub-sha256"]) == 64
        assert len(pkg.extra["wrapper-sha256"]) == 64
    wrap = project / "python_wrap" / "typed"
    assert sorted(p.name for p in wrap.iterdir()) == [
        "SKIPPED.txt",
        "_mochi_typedpkg.abi3.so",
        "_mochi_typedpkg.c",
        "typedpkg_externs.py",
        "typedpkg_externs.pyi",
        "typedpkg_shim.mochi",
    ]
    shim = (wrap / "typedpkg_shim.mochi").read_text()
    parse(shim)
    assert 'import python "typedpkg" as typed' in shim
    assert "extern fun typed.load_(type_: string): list<string>" in shim
    parse((project / "python_wrap" / "untyped" / "untypedpkg_shim.mochi").read_text())

    result = install_and_call(
        tmp_path,
        project,
        "typed",
        """
import _mochi_typedpkg as m
try:
    m.liar()
    lie = "no error"
except m.PythonTypeMismatch as exc:
    lie = str(exc)
result = [m.greet("mochi"), m.load_("k"), lie]
""",
    )
    assert result == ["hello mochi", ["k"], "liar: declared to return int, got str"]
    result = install_and_call(
        tmp_path, project, "untyped", "import _mochi_untypedpkg as m\nresult = m.double(21)"
    )
    assert result == 42

    # Determinism: a second lock from a fresh cache gives the same hashes and sources.
    before = {p.name: p.read_bytes() for p in wrap.iterdir() if p.suffix != ".so"}
    again = cli(project, tmp_path / "cache2", "lock")
    assert again.returncode == 0, again.stderr
    assert "mochi.lock unchanged" in again.stderr
    assert {p.name: p.read_bytes() for p in wrap.iterdir() if p.suffix != ".so"} == before


@pytest.mark.parametrize(
    ("package", "token"),
    [
        ("netimport", "SkipImportTimeNetwork"),
        ("boomimport", "SkipImportTimeError"),
        ("triouser", "SkipIncompatibleAsyncRuntime"),
    ],
)
def test_hostile_or_incompatible_packages_are_skipped_not_fatal(
    tmp_path: Path, index: tuple[str, IndexState], package: str, token: str
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, f'{package} = "*"')
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 0, done.stderr
    skipped = (project / "python_wrap" / package / "SKIPPED.txt").read_text()
    assert f"reason: {token}" in skipped
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    assert lock.packages[0].extra["skipped"] == 1


def test_capability_outside_the_manifest_fails_the_lock_with_evidence(
    tmp_path: Path, index: tuple[str, IndexState]
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'subproc = "*"')
    (project / "mochi.toml").write_text(
        (project / "mochi.toml").read_text() + "\n[python.capabilities]\nproc = false\n"
    )
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 1
    assert "subproc needs capability `proc`" in done.stderr
    assert "subproc/__init__.py:1 imports subprocess" in done.stderr
    assert not (project / "mochi.lock").exists()


def test_update_refuses_capability_elevation_without_the_flag(
    tmp_path: Path, index: tuple[str, IndexState]
) -> None:
    url, state = index
    state.yanked["growing-2.0-py3-none-any.whl"] = "not yet"
    project = tmp_path / "proj"
    write_project(project, url, 'growing = "*"')
    assert cli(project, tmp_path / "cache", "lock").returncode == 0
    before = (project / "mochi.lock").read_text()
    del state.yanked["growing-2.0-py3-none-any.whl"]
    done = cli(project, tmp_path / "cache", "update")
    assert done.returncode == 5, done.stderr
    assert "growing 2.0 gains `net`" in done.stderr
    assert (project / "mochi.lock").read_text() == before
    done = cli(project, tmp_path / "cache", "update", "--allow-capability-elevation")
    assert done.returncode == 0, done.stderr
    assert '"2.0"' in (project / "mochi.lock").read_text()


def test_stubs_command_shows_the_tier_and_files(
    tmp_path: Path, index: tuple[str, IndexState]
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'typedpkg = "*"')
    assert cli(project, tmp_path / "cache", "lock").returncode == 0
    done = cli(project, tmp_path / "cache", "stubs", "typedpkg")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "typedpkg: tier inline (from typedpkg 1.0)"
    assert done.stdout.splitlines()[1].endswith("typedpkg/__init__.py")


def test_typeshed_tier_takes_the_newest_stubs_that_install_here(tmp_path: Path) -> None:
    """The batched typeshed lookup skips yanked, pre-release and Requires-Python-excluded
    stubs, as uv would; the lock names the stubs it used."""
    files = tmp_path / "files"
    files.mkdir()
    build_wheel(files, "untypedpkg", "1.0", files=UNTYPED)
    build_wheel(files, "otheruntyped", "1.0",
                files={"otheruntyped/__init__.py": "def f(x):\n    return x\n"})  # fmt: skip
    stubs = {"untypedpkg-stubs/__init__.pyi": "def double(x: int) -> int: ...\n"}
    for version in ("1.0", "1.2", "1.5", "2.0", "3.0rc1"):
        build_wheel(files, "types-untypedpkg", version, files=stubs)
    with serve_index(files) as (url, state):
        state.yanked["types_untypedpkg-2.0-py3-none-any.whl"] = "broken"
        state.requires_python["types_untypedpkg-1.5-py3-none-any.whl"] = ">=3.99"
        project = tmp_path / "proj"
        write_project(project, url, 'untypedpkg = "*"\notheruntyped = "*"',
                      'import python "untypedpkg" as u\n')  # fmt: skip
        done = cli(project, tmp_path / "cache", "lock")
        assert done.returncode == 0, done.stderr
        assert "2 stub lookups" in done.stderr  # one stage for both untyped packages
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    pkg = next(p for p in lock.packages if p.name == "untypedpkg")
    stub = (pkg.extra["stub-provenance"], pkg.extra["stub-source"])
    assert stub == ("typeshed", "types-untypedpkg 1.2")
    other = next(p for p in lock.packages if p.name == "otheruntyped")
    assert other.extra["stub-provenance"] == "stubgen"  # no types-otheruntyped on the index
    shim = (project / "python_wrap" / "u" / "untypedpkg_shim.mochi").read_text()
    assert "double(x: int): int" in shim
