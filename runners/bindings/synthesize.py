"""From a stub tree to a binding plan: every exported item mapped through the type table, or
refused with a skip token, a detail and an override hint. Deterministic: items sorted."""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass, field

from mochi_pybridge.runners.bindings.mochi_types import MochiType, Opaque, Optional, Record
from mochi_pybridge.runners.bindings.stubmodel import Func, Klass, Module, Param, StubTree
from mochi_pybridge.runners.bindings.typetable import Context, Refused, to_mochi

# Mochi keywords (mochi-grammar.md): never usable as identifiers.
MOCHI_RESERVED = frozenset(
    [
        "test",
        "expect",
        "agent",
        "intent",
        "on",
        "stream",
        "emit",
        "type",
        "fun",
        "extern",
        "import",
        "return",
        "break",
        "continue",
        "let",
        "var",
        "if",
        "else",
        "then",
        "for",
        "while",
        "in",
        "generate",
        "match",
        "fetch",
        "load",
        "save",
        "package",
        "export",
        "fact",
        "rule",
        "all",
        "none",
        "true",
        "false",
    ]
)
HINT = (
    "wrap it in a typed Python function of your own and import that module instead, "
    "or add stubs for it (a NAME-stubs package or types-NAME)"
)


def mochi_ident(name: str) -> str:
    """A Python name as a Mochi identifier: reserved words get a trailing underscore."""
    return f"{name}_" if name in MOCHI_RESERVED else name


@dataclass(frozen=True)
class ParamPlan:
    mochi_name: str
    python_name: str
    type: MochiType
    optional: bool  # had a default: Mochi passes none to mean "use the default"
    keyword: bool  # may be passed by keyword


@dataclass(frozen=True)
class FunctionPlan:
    mochi_name: str  # name after ALIAS. in the shim and in the sidecar
    target: str  # how the sidecar reaches it: "func", "Class.method", "Class" (constructor)
    kind: str  # function | method | constructor | getter
    params: tuple[ParamPlan, ...]
    result: MochiType | None
    is_async: bool
    source: str  # qualified Python name, for messages


@dataclass(frozen=True)
class VarPlan:
    mochi_name: str
    python_name: str
    type: MochiType


@dataclass(frozen=True)
class SkipPlan:
    item: str
    token: str
    detail: str
    hint: str = HINT


@dataclass
class Plan:
    module: str
    alias: str
    functions: list[FunctionPlan] = field(default_factory=list)
    variables: list[VarPlan] = field(default_factory=list)
    opaques: dict[str, str] = field(default_factory=dict)  # Mochi name → Python qualname
    records: dict[str, Record] = field(default_factory=dict)
    record_kinds: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # name → (kind, qualname)
    skipped: list[SkipPlan] = field(default_factory=list)

    def sort(self) -> None:
        self.functions.sort(key=lambda f: f.mochi_name)
        self.variables.sort(key=lambda v: v.mochi_name)
        self.skipped.sort(key=lambda s: (s.item, s.token))


@dataclass
class Options:
    int_mode: str = "int64"
    allow_partial: bool = False


class Synthesizer:
    def __init__(self, tree: StubTree, module: str, alias: str, options: Options) -> None:
        self.tree = tree
        self.module = module
        self.options = options
        self.plan = Plan(module=module, alias=alias)
        self._class_names: dict[str, str] = {}  # qualname → Mochi name
        self._in_progress: set[str] = set()

    # -- class lookup ----------------------------------------------------------------------

    def _mochi_class_name(self, klass: Klass) -> str:
        if klass.qualname in self._class_names:
            return self._class_names[klass.qualname]
        name = klass.name
        taken = set(self._class_names.values())
        if name in taken or name in MOCHI_RESERVED or not name.isidentifier():
            name = f"{klass.module.replace('.', '_')}_{klass.name}"
        self._class_names[klass.qualname] = name
        return name

    def _klass_kind(self, klass: Klass, module: Module) -> str:
        if "metaclass" in klass.keywords:
            meta = ast.unparse(klass.keywords["metaclass"])
            if meta.split(".")[-1] not in ("ABCMeta",):
                return "metaclass"
        for base in klass.bases:
            qualified = module.resolve(base.split(".")[0]) if base else None
            tail = base.split(".")[-1]
            if tail == "TypedDict" or (qualified or "").endswith("TypedDict"):
                return "typeddict"
            if tail == "NamedTuple":
                return "namedtuple"
        if klass.frozen_dataclass:
            return "dataclass"
        return "opaque"

    def lookup_class(self, qualified: str) -> MochiType | None:
        found = self.tree.definition(qualified)
        if found is None:
            return None
        module, local = found
        if local in module.aliases:
            if qualified in self._in_progress:
                raise Refused("SkipForwardRef", f"recursive type alias {qualified}")
            self._in_progress.add(qualified)
            try:
                return to_mochi(module.aliases[local], self._context(module))
            finally:
                self._in_progress.discard(qualified)
        klass = module.classes.get(local)
        if klass is None:
            return None
        kind = self._klass_kind(klass, module)
        name = self._mochi_class_name(klass)
        if kind == "metaclass":
            raise Refused("SkipMetaclass", f"{klass.qualname} has a custom metaclass")
        if kind == "opaque":
            self.plan.opaques[name] = klass.qualname
            return Opaque(name)
        if name in self.plan.records:
            return self.plan.records[name]
        if klass.qualname in self._in_progress:
            return Opaque(name)  # a record that contains itself: the inner one is a handle
        self._in_progress.add(klass.qualname)
        try:
            ctx = self._context(module)
            public = [(f, ann) for f, ann in klass.fields.items() if not f.startswith("_")]
            fields = tuple((mochi_ident(f), self._field_type(ann, ctx)) for f, ann in public)
            python_names = tuple(f for f, _ in public)
        except Refused:
            self.plan.opaques[name] = klass.qualname
            return Opaque(name)
        finally:
            self._in_progress.discard(klass.qualname)
        record = Record(name, fields, python_names)
        self.plan.records[name] = record
        self.plan.record_kinds[name] = (kind, klass.qualname)
        return record

    def _field_type(self, annotation: ast.expr, ctx: Context) -> MochiType:
        result = to_mochi(annotation, ctx)
        if result is None:
            raise Refused("SkipUnsupportedTypingConstruct", "a None-typed field")
        return result

    def _context(
        self,
        module: Module,
        self_type: MochiType | None = None,
        typevars: frozenset[str] = frozenset(),
    ) -> Context:
        return Context(
            resolve_name=module.resolve,
            lookup_class=self.lookup_class,
            int_mode=self.options.int_mode,
            allow_partial=self.options.allow_partial,
            self_type=self_type,
            typevars=typevars,
        )

    # -- items -----------------------------------------------------------------------------

    def _skip(self, item: str, token: str, detail: str) -> None:
        self.plan.skipped.append(SkipPlan(item, token, detail))

    def _function(
        self,
        func: Func,
        module: Module,
        *,
        mochi_name: str,
        target: str,
        kind: str,
        self_type: MochiType | None = None,
        typevars: frozenset[str] = frozenset(),
    ) -> FunctionPlan:
        ctx = self._context(module, self_type, typevars)
        params: list[ParamPlan] = []
        plist = list(func.params)
        if kind in ("method", "getter") and plist and "staticmethod" not in func.decorators:
            first = plist.pop(0)
            if "classmethod" in func.decorators:
                first = None  # type: ignore[assignment]
            elif self_type is not None:
                params.append(ParamPlan("self_", first.name, self_type, False, False))
        if kind == "constructor" and plist:
            plist.pop(0)
        for param in plist:
            if param.kind in ("var", "varkw"):
                # The function is callable without them: bind it, and report what is lost.
                stars = "*" if param.kind == "var" else "**"
                self._skip(
                    f"{func.module}.{target}({stars}{param.name})",
                    "SkipParamSpec",
                    f"{stars}{param.name} is not passed through; the named parameters are",
                )
                continue
            params.append(self._param(param, ctx))
        result = to_mochi(func.returns, ctx, is_return=True) if kind != "constructor" else self_type
        name = mochi_name + ("_sync" if func.is_async else "")
        return FunctionPlan(
            name, target, kind, tuple(params), result, func.is_async, f"{func.module}.{target}"
        )

    def _param(self, param: Param, ctx: Context) -> ParamPlan:
        if param.kind in ("var", "varkw"):
            stars = "*" if param.kind == "var" else "**"
            raise Refused("SkipParamSpec", f"{stars}{param.name} parameters")
        mapped = to_mochi(param.annotation, ctx)
        if mapped is None:
            raise Refused("SkipUnsupportedTypingConstruct", f"parameter {param.name} typed None")
        if param.has_default and not isinstance(mapped, Optional):
            mapped = Optional(mapped)
        return ParamPlan(
            mochi_ident(param.name), param.name, mapped, param.has_default, param.kind != "posonly"
        )

    def _pick_arm(self, arms: list[Func], module: Module, **kwargs: object) -> FunctionPlan:
        overloads = [a for a in arms if any(d.split(".")[-1] == "overload" for d in a.decorators)]
        candidates = overloads or arms[-1:]
        mapped: list[FunctionPlan] = []
        errors: list[Refused] = []
        for arm in candidates:
            try:
                mapped.append(self._function(arm, module, **kwargs))  # type: ignore[arg-type]
            except Refused as exc:
                errors.append(exc)
        if len(candidates) > 1:
            if len(mapped) != 1:
                raise Refused(
                    "SkipOverloadAmbiguity",
                    f"{len(mapped)} of {len(candidates)} overloads map to Mochi types",
                )
            return mapped[0]
        if mapped:
            return mapped[0]
        raise errors[0]

    def _export_function(self, name: str, arms: list[Func], module: Module) -> None:
        last = arms[-1]
        if all(p.kind in ("var", "varkw") and p.annotation is None for p in last.params) and (
            last.params and last.returns is None
        ):
            self._skip(
                f"{self.module}.{name}",
                "SkipCFunctionWithoutStubs",
                "a native function whose signature could not be read (*args, **kwargs)",
            )
            return
        try:
            plan = self._pick_arm(
                arms, module, mochi_name=mochi_ident(name), target=name, kind="function"
            )
        except Refused as exc:
            self._skip(f"{self.module}.{name}", exc.token, exc.detail)
            return
        self.plan.functions.append(plan)

    def _export_class(self, name: str, klass: Klass, module: Module) -> None:
        try:
            handle = self.lookup_class(klass.qualname)
        except Refused as exc:
            self._skip(f"{self.module}.{name}", exc.token, exc.detail)
            return
        if not isinstance(handle, Opaque):
            return  # records are declared as types; they have no methods in Mochi
        mochi = handle.name
        for method, all_arms in sorted(klass.methods.items()):
            item = f"{self.module}.{name}.{method}"
            accessors = [a for a in all_arms if any(_is_accessor(d) for d in a.decorators)]
            arms = [a for a in all_arms if a not in accessors]
            if accessors:
                self._skip(item, "SkipDescriptor", "property setters and deleters are not exposed")
            if not arms:
                continue
            is_property = any(
                d.split(".")[-1] in ("property", "cached_property") for d in arms[0].decorators
            )
            if method == "__init__":
                kind, fname, target = "constructor", f"{mochi}_new", name
            elif method.startswith("__") and method.endswith("__"):
                self._skip(item, "SkipDunder", "special methods are not exposed")
                continue
            elif method.startswith("_"):
                self._skip(item, "SkipPrivateName", "private by naming convention")
                continue
            elif is_property:
                kind, fname, target = "getter", f"{mochi}_{method}", f"{name}.{method}"
            else:
                kind, fname, target = "method", f"{mochi}_{method}", f"{name}.{method}"
            try:
                plan = self._pick_arm(
                    arms,
                    module,
                    mochi_name=fname,
                    target=target,
                    kind=kind,
                    self_type=handle,
                    typevars=klass.typevars,
                )
            except Refused as exc:
                self._skip(item, exc.token, exc.detail)
                continue
            self.plan.functions.append(plan)

    def run(self) -> Plan:
        top = self.tree.load(self.module)
        if top is None:
            raise Refused("SkipUntypedPackage", f"no stubs or sources for {self.module}")
        if any(m is not None and m.imports_trio for m in self.tree.modules.values()):
            raise Refused("SkipIncompatibleAsyncRuntime", f"{self.module} imports trio")
        for name in sorted(top.exports()):
            found = self.tree.definition(f"{self.module}.{name}")
            item = f"{self.module}.{name}"
            if name.startswith("__") and name != "__version__":
                self._skip(item, "SkipDunder", "module dunders are not exposed")
                continue
            if found is None:
                self._skip(
                    item, "SkipDynamicAttribute", "not defined in the stubs (set at runtime?)"
                )
                continue
            module, local = found
            if not local:
                self._skip(item, "SkipDynamicAttribute", "a submodule: import it on its own")
            elif local in module.functions:
                self._export_function(name, module.functions[local], module)
            elif local in module.classes:
                self._export_class(name, module.classes[local], module)
            elif local in module.variables:
                self._export_variable(name, module.variables[local].annotation, module)
            elif local in module.aliases:
                try:
                    self.lookup_class(f"{module.name}.{local}")
                except Refused as exc:
                    self._skip(item, exc.token, exc.detail)
            elif local in module.typevars:
                self._skip(item, "SkipUnsupportedTypingConstruct", "a type variable")
        for name, error in sorted(self.tree.errors.items()):
            self._skip(name, "SkipForwardRef", f"stub module could not be parsed: {error}")
        self.plan.sort()
        return self.plan

    def _export_variable(self, name: str, annotation: ast.expr | None, module: Module) -> None:
        try:
            mapped = to_mochi(annotation, self._context(module))
        except Refused as exc:
            self._skip(f"{self.module}.{name}", exc.token, exc.detail)
            return
        if mapped is None:
            self._skip(f"{self.module}.{name}", "SkipUnsupportedTypingConstruct", "None-typed")
            return
        self.plan.variables.append(VarPlan(mochi_ident(name), name, mapped))


def _is_accessor(decorator: str) -> bool:
    tail = decorator.rsplit(".", maxsplit=1)[-1]
    return tail in ("setter", "deleter") and "." in decorator


def synthesize(tree: StubTree, module: str, alias: str, options: Options) -> Plan:
    try:
        return Synthesizer(tree, module, alias, options).run()
    except Refused as exc:
        plan = Plan(module=module, alias=alias)
        plan.skipped.append(SkipPlan(module, exc.token, exc.detail))
        return plan


__all__ = ["MOCHI_RESERVED", "Options", "Plan", "keyword", "mochi_ident", "synthesize"]
