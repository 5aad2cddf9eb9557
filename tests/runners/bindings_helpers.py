"""Build a package from source, run the real synthesis and the real C compiler on it, and
call the wrapper in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

from mochi_pybridge.runners.bindings.emit import Outputs, render_all
from mochi_pybridge.runners.bindings.stubmodel import StubTree
from mochi_pybridge.runners.bindings.synthesize import Options, Plan, synthesize


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def plan_for(root: Path, module: str, **options: object) -> Plan:
    return synthesize(StubTree([root]), module, module, Options(**options))  # type: ignore[arg-type]


def build_wrapper(
    root: Path, out: Path, module: str, *, strict: bool = True, **options: object
) -> Outputs:
    plan = plan_for(root, module, **options)
    outputs = render_all(plan, module, "1.0", strict_returns=strict)
    name = module.replace(".", "_")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}_externs.py").write_text(outputs.sidecar)
    (out / f"_mochi_{name}.c").write_text(outputs.c_source)
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", f"-I{include}",
         str(out / f"_mochi_{name}.c"), "-o", str(out / f"_mochi_{name}.abi3.so")],
        check=True, capture_output=True,
    )  # fmt: skip
    return outputs


def call(root: Path, out: Path, code: str) -> Any:
    """Run ``code`` in a fresh interpreter with the package and wrapper importable; ``code``
    sets ``result`` (JSON-able)."""
    program = f"import sys, json\nsys.path[:0] = [{str(out)!r}, {str(root)!r}]\n" + textwrap.dedent(
        code
    )
    program += "\nprint(json.dumps(result))\n"
    done = subprocess.run(
        [sys.executable, "-I", "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
