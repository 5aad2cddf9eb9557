"""Which host paths a sandboxed runner needs to run *our* code: the interpreter, the venv and
the mochi_pybridge sources. All are bound read-only at their host paths (a venv records
absolute paths). None of them holds secrets; ``$HOME`` as a whole is never bound.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import mochi_pybridge


@cache
def runtime_paths() -> tuple[str, ...]:
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    package_root = Path(mochi_pybridge.__file__).parent
    paths.add(str(package_root.resolve()))
    # The architecture folders are symlinked into the package root: bind their targets too.
    for child in package_root.iterdir():
        if child.is_symlink():
            paths.add(str(child.resolve()))
    # An interpreter outside both prefixes (e.g. a venv whose python links elsewhere).
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    return tuple(sorted(p for p in paths if not p.startswith("/usr/")))


def python_argv(module: str, *args: str) -> tuple[str, ...]:
    """Run one of our modules isolated from the environment (-I) and without bytecode (-B)."""
    return (sys.executable, "-I", "-B", "-m", module, *args)
