"""What a package's code can do, from its code: imports and calls that reach the network, the
filesystem, processes, ctypes, and monkey-patching, plus native extension files (SPEC §7).
Static and conservative: an import is evidence enough. Each finding carries ``file:line``."""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterator
from pathlib import Path

from mochi_pybridge.runners.bindings.stubmodel import dotted_name

MAX_FILE = 4 * 1024 * 1024
MAX_FILES = 20_000

_IMPORTS = {
    "net": (
        "socket",
        "ssl",
        "http",
        "urllib",
        "urllib3",
        "requests",
        "httpx",
        "aiohttp",
        "ftplib",
        "smtplib",
        "asyncio.streams",
        "websockets",
    ),
    "fs": ("shutil", "tempfile", "glob", "pathlib", "io", "zipfile", "tarfile"),
    "proc": ("subprocess", "multiprocessing", "pty", "concurrent.futures.process"),
    "ctypes": ("ctypes", "cffi", "_cffi_backend"),
    # Not a capability: trio's cancellation model cannot be bridged (SkipIncompatibleAsyncRuntime).
    "trio": ("trio",),
}
_CALLS = {
    "fs": (
        "open",
        "os.open",
        "os.remove",
        "os.unlink",
        "os.mkdir",
        "os.makedirs",
        "os.rename",
        "os.listdir",
        "os.walk",
        "os.scandir",
    ),
    "proc": (
        "os.system",
        "os.popen",
        "os.fork",
        "os.execv",
        "os.execve",
        "os.execvp",
        "os.spawnv",
        "os.spawnl",
        "os.posix_spawn",
        "os.kill",
    ),
    "monkey-patch": ("setattr",),
}
_NATIVE = (".so", ".pyd", ".dylib")


def _dotted(node: ast.expr) -> str:
    return dotted_name(node, look_through=False)


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# Every call this module looks for names ``open``, ``setattr`` or ``os.<name>`` in the source
# text (spacing and line continuations allowed for). An ASCII file without one can give no
# call evidence, so only its statements are walked: imports and assignments are statements,
# and statements are a small part of a tree. Non-ASCII files are always walked in full, since
# identifiers are NFKC-normalised (a fullwidth ``ｏｐｅｎ`` is ``open``).
_CALL_TEXT = re.compile(rb"\b(?:open|setattr)\b|\bos[\s\\]*\.")
_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """The tree's statements (and handler/case blocks) in ``ast.walk``'s breadth-first order."""
    todo = collections.deque([tree])
    while todo:
        node = todo.popleft()
        yield node
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                todo.extend(v for v in value if isinstance(v, _BLOCKS))


def _scan(tree: ast.AST, rel: str, *, calls: bool = True) -> Iterator[tuple[str, str]]:
    imported_modules: set[str] = set()
    for node in ast.walk(tree) if calls else _statements(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
            imported_modules |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        line = getattr(node, "lineno", 0)
        for name in names:
            for cap, prefixes in _IMPORTS.items():
                if _matches(name, prefixes):
                    yield cap, f"{rel}:{line} imports {name}"
        if isinstance(node, ast.Call):
            callee = _dotted(node.func)
            for cap, targets in _CALLS.items():
                if callee in targets:
                    if cap == "monkey-patch":
                        # setattr(<imported module>, ...) patches someone else's module.
                        first = node.args[0] if node.args else None
                        if not (isinstance(first, ast.Name) and first.id in imported_modules):
                            continue
                    yield cap, f"{rel}:{node.lineno} calls {callee}"
        if isinstance(node, ast.Assign):
            for target in node.targets:
                # builtins.x = ... / sys.modules[...] = ... / <module>.attr = ...
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and (target.value.id in imported_modules or target.value.id == "builtins")
                ):
                    yield "monkey-patch", f"{rel}:{node.lineno} assigns {_dotted(target)}"
                if isinstance(target, ast.Subscript) and _dotted(target.value) == "sys.modules":
                    yield "monkey-patch", f"{rel}:{node.lineno} assigns sys.modules[...]"


def analyse(site: Path, top_level: list[str]) -> dict[str, list[str]]:
    """Capabilities of the package whose import names are ``top_level`` inside ``site``."""
    found: dict[str, list[str]] = {}
    count = 0
    roots = [site / t for t in top_level if (site / t).is_dir() and not (site / t).is_symlink()]
    files: list[Path] = []
    for root in roots:
        files += sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    files += sorted(
        p for t in top_level for p in site.glob(f"{t}.*") if p.is_file() and not p.is_symlink()
    )
    for path in files:
        count += 1
        if count > MAX_FILES:
            break
        rel = str(path.relative_to(site))
        if path.suffix in _NATIVE or (".cpython-" in path.name and path.name.endswith(".so")):
            found.setdefault("cextension", []).append(f"{rel} is a native extension")
            continue
        if path.suffix != ".py" or path.stat().st_size > MAX_FILE:
            continue
        source = path.read_bytes()
        try:
            tree = ast.parse(source, filename=rel)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        calls = not source.isascii() or _CALL_TEXT.search(source) is not None
        for cap, evidence in _scan(tree, rel, calls=calls):
            found.setdefault(cap, []).append(evidence)
    return {cap: sorted(set(ev))[:20] for cap, ev in sorted(found.items())}
