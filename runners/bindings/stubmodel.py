"""A package's API as read from its stub tree (``.pyi`` preferred, ``.py`` otherwise) with
``ast``: functions (with overload arms), classes (with their kind: TypedDict, NamedTuple,
frozen dataclass, or other), variables, type aliases and type variables, and the names each
module imports. Stub files may be hostile: every file is size-capped and parsed on its own,
so one bad module is skipped, not the package."""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE = 4 * 1024 * 1024
MAX_MODULES = 2_000
BUILTIN_NAMES = frozenset(dir(builtins)) | {"None"}


@dataclass
class Param:
    name: str
    annotation: ast.expr | None
    kind: str  # "posonly", "pos", "kwonly", "var", "varkw"
    has_default: bool


@dataclass
class Func:
    name: str
    params: list[Param]
    returns: ast.expr | None
    is_async: bool
    decorators: list[str]
    module: str
    lineno: int


@dataclass
class Klass:
    name: str
    module: str
    bases: list[str]  # qualified where resolvable, else the source text
    decorators: list[str]
    keywords: dict[str, ast.expr]
    methods: dict[str, list[Func]] = field(default_factory=dict)
    fields: dict[str, ast.expr] = field(default_factory=dict)
    typevars: frozenset[str] = frozenset()
    lineno: int = 0
    frozen_dataclass: bool = False

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Var:
    name: str
    annotation: ast.expr | None
    module: str


@dataclass
class Module:
    name: str
    path: Path
    is_stub: bool
    imports: dict[str, str] = field(default_factory=dict)  # local name → qualified name
    explicit_reexports: set[str] = field(default_factory=set)
    functions: dict[str, list[Func]] = field(default_factory=dict)
    classes: dict[str, Klass] = field(default_factory=dict)
    variables: dict[str, Var] = field(default_factory=dict)
    aliases: dict[str, ast.expr] = field(default_factory=dict)
    typevars: set[str] = field(default_factory=set)
    all: list[str] | None = None
    imports_trio: bool = False
    star_imports: list[str] = field(default_factory=list)  # modules imported with *

    def resolve(self, local: str) -> str | None:
        if local in self.typevars:
            return f"typevar:{local}"
        if (
            local in self.functions
            or local in self.classes
            or local in self.variables
            or local in self.aliases
        ):
            return f"{self.name}.{local}"
        if local in self.imports:
            return self.imports[local]
        if local in BUILTIN_NAMES:
            return f"builtins.{local}"
        return None

    def exports(self) -> list[str]:
        if self.all is not None:
            return list(dict.fromkeys(self.all))
        names = [*self.functions, *self.classes, *self.variables]
        if self.is_stub:
            reexported = self.explicit_reexports  # PEP 484: only `import x as x` re-exports
        else:
            # In sources, what __init__ pulls in from its own package is its API; imports of
            # other packages (asyncio, dataclass, ...) are not.
            top = self.name.split(".")[0]
            reexported = {n for n, q in self.imports.items() if q.split(".")[0] == top}
            reexported |= self.explicit_reexports
        names += sorted(reexported)
        return [n for n in dict.fromkeys(names) if not n.startswith("_") or n == "__version__"]


def dotted_name(node: ast.expr, *, look_through: bool = True) -> str:
    """``a.b.c`` for a name or attribute chain ("" otherwise); with ``look_through``, the
    callee of a call and the base of a subscript count too (decorators, generic bases)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted_name(node.value, look_through=look_through)}.{node.attr}"
    if look_through and isinstance(node, ast.Call):
        return dotted_name(node.func)
    if look_through and isinstance(node, ast.Subscript):
        return dotted_name(node.value)
    return ""


def _params(args: ast.arguments) -> list[Param]:
    out: list[Param] = []
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "posonly" if i < len(args.posonlyargs) else "pos"
        out.append(Param(arg.arg, arg.annotation, kind, default is not None))
    if args.vararg:
        out.append(Param(args.vararg.arg, args.vararg.annotation, "var", False))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append(Param(arg.arg, arg.annotation, "kwonly", default is not None))
    if args.kwarg:
        out.append(Param(args.kwarg.arg, args.kwarg.annotation, "varkw", False))
    return out


def _func(node: ast.FunctionDef | ast.AsyncFunctionDef, module: str) -> Func:
    return Func(
        name=node.name,
        params=_params(node.args),
        returns=node.returns,
        is_async=isinstance(node, ast.AsyncFunctionDef),
        decorators=[dotted_name(d) for d in node.decorator_list],
        module=module,
        lineno=node.lineno,
    )


def _is_typevar_call(value: ast.expr) -> bool:
    return isinstance(value, ast.Call) and dotted_name(value.func).split(".")[-1] in (
        "TypeVar",
        "ParamSpec",
        "TypeVarTuple",
    )


def _module_name(package: str, parts: tuple[str, ...], level: int, target: str | None) -> str:
    base = list(parts[: len(parts) - level + 1]) if level else []
    if level and not base:
        base = [package]
    return ".".join([*base, *(target.split(".") if target else [])])


def parse_module(name: str, path: Path, *, is_package: bool) -> Module:
    source = path.read_bytes()[: MAX_FILE + 1]
    if len(source) > MAX_FILE:
        raise ValueError(f"{path.name} is larger than {MAX_FILE} bytes")
    tree = ast.parse(source, filename=path.name)
    module = Module(name=name, path=path, is_stub=path.suffix == ".pyi")
    # For relative imports: the package this module lives in.
    parts = tuple(name.split(".")) if is_package else tuple(name.split(".")[:-1])
    for node in tree.body:
        _statement(module, node, parts)
    return module


def _statement(module: Module, node: ast.stmt, parts: tuple[str, ...]) -> None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                module.imports[alias.asname] = alias.name
                if alias.asname == alias.name:
                    module.explicit_reexports.add(alias.asname)
            else:
                module.imports[alias.name.split(".")[0]] = alias.name.split(".")[0]
            if alias.name.split(".")[0] == "trio":
                module.imports_trio = True
    elif isinstance(node, ast.ImportFrom):
        source = node.module or ""
        if node.level:
            source = ".".join(
                [*parts[: max(0, len(parts) - node.level + 1)], *([source] if source else [])]
            )
        if source.split(".")[0] == "trio":
            module.imports_trio = True
        for alias in node.names:
            if alias.name == "*":
                module.star_imports.append(source)
                continue
            local = alias.asname or alias.name
            module.imports[local] = f"{source}.{alias.name}"
            if alias.asname and alias.asname == alias.name:
                module.explicit_reexports.add(local)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        module.functions.setdefault(node.name, []).append(_func(node, module.name))
    elif isinstance(node, ast.ClassDef):
        module.classes[node.name] = _klass(node, module)
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        target = node.target.id
        if dotted_name(node.annotation).split(".")[-1] == "TypeAlias" and node.value is not None:
            module.aliases[target] = node.value
        else:
            module.variables[target] = Var(target, node.annotation, module.name)
    elif (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ):
        target = node.targets[0].id
        if target == "__all__" and isinstance(node.value, ast.List | ast.Tuple):
            module.all = [
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
        elif _is_typevar_call(node.value):
            module.typevars.add(target)
        elif isinstance(node.value, ast.Subscript | ast.BinOp) or (
            isinstance(node.value, ast.Name | ast.Attribute) and module.is_stub
        ):
            module.aliases[target] = node.value
    elif isinstance(node, ast.TypeAlias) if hasattr(ast, "TypeAlias") else False:  # 3.12 syntax
        module.aliases[node.name.id] = node.value  # type: ignore[attr-defined]
    elif isinstance(node, ast.If):
        # `if sys.version_info >= ...` / TYPE_CHECKING: take the first branch (typeshed style).
        for child in node.body:
            _statement(module, child, parts)


def _klass(node: ast.ClassDef, module: Module) -> Klass:
    klass = Klass(
        name=node.name,
        module=module.name,
        bases=[dotted_name(b) for b in node.bases],
        decorators=[dotted_name(d) for d in node.decorator_list],
        keywords={k.arg: k.value for k in node.keywords if k.arg},
        lineno=node.lineno,
    )
    typevars = set()
    for base in node.bases:
        if isinstance(base, ast.Subscript):
            for sub in ast.walk(base.slice):
                if isinstance(sub, ast.Name) and sub.id in module.typevars:
                    typevars.add(sub.id)
    klass.typevars = frozenset(typevars)
    for decorator in node.decorator_list:
        name = dotted_name(decorator).split(".")[-1]
        if name in ("frozen", "define_frozen"):  # attrs.frozen
            klass.frozen_dataclass = True
        elif isinstance(decorator, ast.Call) and name in ("dataclass", "s", "attrs", "define"):
            for keyword in decorator.keywords:
                if keyword.arg == "frozen" and isinstance(keyword.value, ast.Constant):
                    klass.frozen_dataclass = bool(keyword.value.value)
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            klass.methods.setdefault(item.name, []).append(_func(item, module.name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            klass.fields[item.target.id] = item.annotation
    return klass


class StubTree:
    """Modules under one or more roots (a site directory, a ``-stubs`` package, …)."""

    def __init__(self, roots: list[Path], *, stub_suffix: str = "") -> None:
        self.roots = roots
        self.stub_suffix = stub_suffix  # "-stubs" when reading a stubs distribution
        self.modules: dict[str, Module | None] = {}
        self.errors: dict[str, str] = {}

    def _find(self, name: str) -> tuple[Path, bool] | None:
        parts = name.split(".")
        heads = [parts[0] + self.stub_suffix, parts[0]] if self.stub_suffix else [parts[0]]
        for root in self.roots:
            for head in heads:
                base = root.joinpath(head, *parts[1:])
                for candidate, is_package in (
                    (base / "__init__.pyi", True),
                    (base.with_suffix(".pyi"), False),
                    (base / "__init__.py", True),
                    (base.with_suffix(".py"), False),
                ):
                    if candidate.is_file() and not candidate.is_symlink():
                        return candidate, is_package
        return None

    def load(self, name: str) -> Module | None:
        if name in self.modules:
            return self.modules[name]
        if len(self.modules) >= MAX_MODULES:
            return None
        self.modules[name] = None
        found = self._find(name)
        if found is None:
            return None
        path, is_package = found
        try:
            module = parse_module(name, path, is_package=is_package)
        except (
            SyntaxError,
            ValueError,
            RecursionError,
            MemoryError,
            UnicodeDecodeError,
            OSError,
        ) as exc:
            self.errors[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            return None
        self.modules[name] = module
        self._expand_stars(module)
        return module

    def _expand_stars(self, module: Module) -> None:
        """``from x import *``: every public name of x becomes an import (and, as in stubs
        and ``__init__`` files alike, a re-export) of this module."""
        for source in module.star_imports:
            target = self.load(source)
            if target is None:
                continue
            for name in target.exports():
                if (
                    name not in module.imports
                    and name not in module.functions
                    and name not in module.classes
                ):
                    module.imports[name] = f"{source}.{name}"
                    module.explicit_reexports.add(name)

    def definition(self, qualified: str, depth: int = 0) -> tuple[Module, str] | None:
        """The module that defines ``qualified`` (following re-exports) and the local name."""
        if depth > 8 or "." not in qualified:
            return None
        module_name, local = qualified.rsplit(".", 1)
        module = self.load(module_name)
        if module is None:
            submodule = self.load(qualified)
            return (submodule, "") if submodule is not None else None
        if (
            local in module.functions
            or local in module.classes
            or local in module.variables
            or local in module.aliases
        ):
            return module, local
        if local in module.typevars:
            return module, local
        target = module.imports.get(local)
        if target is not None and target != qualified:
            return self.definition(target, depth + 1)
        return None
