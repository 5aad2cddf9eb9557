"""mochi.toml validation: every error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mochi_pybridge.kernel.manifest import ManifestError, load_manifest, scan_imports

GOOD = """[package]
name = "hello"
version = "0.1.0"

[python-dependencies]
requests = ">=2.31,<3"
httpx = { version = "^0.27", extras = ["http2"] }
attrs = "*"

[python]
requires-python = ">=3.11"
int-mode = "bigint"

[python.capabilities]
proc = false
"""


def project(tmp_path: Path, manifest: str, mochi: str = "") -> Path:
    (tmp_path / "mochi.toml").write_text(manifest)
    if mochi:
        (tmp_path / "main.mochi").write_text(mochi)
    return tmp_path


def test_load_manifest_reads_the_spec_example(tmp_path: Path) -> None:
    m = load_manifest(
        project(tmp_path, GOOD, 'import python "requests" as http\nimport python "attrs"\n')
    )
    deps = {d.name: d for d in m.dependencies}
    assert deps["requests"].specifier == "<3,>=2.31"
    assert deps["httpx"].specifier == "<0.28,>=0.27"  # caret
    assert deps["httpx"].extras == ("http2",)
    assert deps["attrs"].specifier == ""
    assert m.int_mode == "bigint"
    assert m.capabilities == {"proc": False}
    assert m.aliases == {"requests": ("http",), "attrs": ("attrs",)}


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        (
            GOOD.replace('requests = ">=2.31,<3"', 'requests = "=>2.31"'),
            ":6: [python-dependencies] requests",
        ),
        (GOOD.replace('int-mode = "bigint"', 'int-mode = "huge"'), ":12: [python] int-mode"),
        (GOOD.replace('int-mode = "bigint"', "stubgen-typo = true"), ":12: [python] stubgen-typo"),
        (GOOD.replace("proc = false", "teleport = true"), ":15: [python.capabilities] teleport"),
        (GOOD.replace("proc = false", 'proc = "no"'), ":15: [python.capabilities] proc"),
        (GOOD + "\n[pythn]\nx = 1\n", ": pythn: unknown table"),
        (GOOD.replace('attrs = "*"', "attrs = 3"), ":8: [python-dependencies] attrs"),
        ("[package\nname=", "not valid TOML"),
    ],
)
def test_load_manifest_errors_name_file_line_and_key(
    tmp_path: Path, broken: str, where: str
) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(project(tmp_path, broken))
    message = info.value.diagnostics()
    assert str(tmp_path / "mochi.toml") in message
    assert where in message


def test_import_spec_must_agree_with_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(
        ManifestError, match=r"main.mochi:1: imports requests@>=3 but mochi.toml has"
    ):
        load_manifest(project(tmp_path, GOOD, 'import python "requests@>=3" as http\n'))
    load_manifest(project(tmp_path, GOOD, 'import python "requests@>=2.31,<3" as http\n'))


def test_scan_imports_refuses_names_that_are_not_modules(tmp_path: Path) -> None:
    (tmp_path / "a.mochi").write_text('import python "x; rm -rf /" as evil\n')
    with pytest.raises(ManifestError, match="does not name a Python module"):
        scan_imports(tmp_path)


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no mochi\.toml here"):
        load_manifest(tmp_path)


def test_index_file_hosts_are_validated(tmp_path: Path) -> None:
    def with_index(entry: str) -> str:
        return GOOD.replace('int-mode = "bigint"', f"indexes = [{entry}]")

    m = load_manifest(project(tmp_path, with_index(
        '{ url = "https://repo.example/simple", file-hosts = ["cdn.example:8443"] }')))  # fmt: skip
    assert m.indexes[0].url == "https://repo.example/simple/"
    assert m.indexes[0].file_hosts == ("cdn.example:8443",)
    for bad in (
        '{ url = "https://repo.example/simple", file-hosts = ["https://cdn.example"] }',
        '{ url = "https://repo.example/simple", file-hosts = "cdn.example" }',
        '{ url = "https://repo.example/simple", mirror = true }',
    ):
        with pytest.raises(ManifestError, match=r"\[python\] indexes"):
            load_manifest(project(tmp_path, with_index(bad)))
