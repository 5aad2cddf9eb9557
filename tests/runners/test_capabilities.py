"""Capability analysis of a package's code: each capability from imports, calls and assignments,
with file:line evidence; and the statements-only fast path finds the same as a full walk."""

from __future__ import annotations

from pathlib import Path

import pytest

from mochi_pybridge.runners.bindings.capabilities import analyse


def site_with(tmp_path: Path, source: str, name: str = "pkg") -> Path:
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(source, encoding="utf-8")
    return site


@pytest.mark.parametrize(
    ("source", "capability", "evidence"),
    [
        ("import socket\n", "net", "pkg/__init__.py:1 imports socket"),
        ("from urllib.request import urlopen\n", "net", "imports urllib.request"),
        ("def f():\n    try:\n        import subprocess\n    except ImportError:\n        pass\n",
         "proc", "pkg/__init__.py:3 imports subprocess"),
        ("match x:\n    case 1:\n        import ctypes\n", "ctypes", ":3 imports ctypes"),
        ("data = open('f').read()\n", "fs", ":1 calls open"),
        ("import os\nos.system('true')\n", "proc", ":2 calls os.system"),
        ("import os\nos \\\n  .system('true')\n", "proc", ":2 calls os.system"),
        ("x = [os.kill(1, 9) for _ in range(1)]\n", "proc", ":1 calls os.kill"),
        ("import json\njson.dumps = None\n", "monkey-patch", ":2 assigns json.dumps"),
        ("import sys\nsys.modules['x'] = None\n", "monkey-patch", "assigns sys.modules[...]"),
        ("import json\nsetattr(json, 'dumps', None)\n", "monkey-patch", ":2 calls setattr"),
        # Identifiers are NFKC-normalised: fullwidth letters spell `open`.
        ("data = \uff4f\uff50\uff45\uff4e('f')\n", "fs", ":1 calls open"),
    ],
)  # fmt: skip
def test_each_capability_is_found_with_evidence(
    tmp_path: Path, source: str, capability: str, evidence: str
) -> None:
    found = analyse(site_with(tmp_path, source), ["pkg"])
    assert capability in found, found
    assert any(evidence in e for e in found[capability]), found[capability]


def test_harmless_code_has_no_capability(tmp_path: Path) -> None:
    source = (
        "import json\n"
        "class Opener:\n"
        "    def reopen(self):  # mentions open, but calls nothing of interest\n"
        "        self.opened = True\n"
        "def setattr_like(obj):\n"
        "    setattr(obj, 'x', 1)  # on a local object, not a module\n"
    )
    assert analyse(site_with(tmp_path, source), ["pkg"]) == {}


def test_native_extensions_count_as_cextension(tmp_path: Path) -> None:
    site = site_with(tmp_path, "")
    (site / "pkg" / "_speed.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    assert "cextension" in analyse(site, ["pkg"])
