"""The closed type table (SPEC §5): a Python annotation (as ``ast``) → a Mochi type, or a
refusal with a stable skip token. Anything not in the table is refused; nothing guesses."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mochi_pybridge.runners.bindings.mochi_types import (
    ANY,
    BIGINT,
    BOOL,
    BYTES,
    FLOAT,
    INT,
    STRING,
    Function,
    ListOf,
    MapOf,
    MochiType,
    Optional,
    Scalar,
    SetOf,
    TupleOf,
)

SKIP_TOKENS = (
    "SkipNoComplexType",
    "SkipOpenUnion",
    "SkipParamSpec",
    "SkipTypeVarTuple",
    "SkipForwardRef",
    "SkipUnsupportedTypingConstruct",
    "SkipCFunctionWithoutStubs",
    "SkipOverloadAmbiguity",
    "SkipUntypedPackage",
    "SkipImportTimeNetwork",
    "SkipImportTimeError",
    "SkipPrivateName",
    "SkipDunder",
    "SkipDescriptor",
    "SkipMetaclass",
    "SkipDynamicAttribute",
    "SkipIncompatibleAsyncRuntime",
    "SkipBytearrayMutable",
)


class Refused(Exception):
    """An annotation outside the table: ``token`` (one of SKIP_TOKENS) and a detail."""

    def __init__(self, token: str, detail: str) -> None:
        assert token in SKIP_TOKENS, token
        super().__init__(f"{token}: {detail}")
        self.token = token
        self.detail = detail


NONE = "builtins.None"

_SCALARS: Mapping[str, MochiType] = {
    "builtins.float": FLOAT,
    "builtins.bool": BOOL,
    "builtins.str": STRING,
    "builtins.bytes": BYTES,
    "typing.LiteralString": STRING,
    "typing_extensions.LiteralString": STRING,
}
_LISTS = {
    "builtins.list",
    "typing.List",
    "typing.Sequence",
    "collections.abc.Sequence",
    "typing.MutableSequence",
    "collections.abc.MutableSequence",
    "typing.Iterable",
    "collections.abc.Iterable",
    "typing.Iterator",
    "collections.abc.Iterator",
    "typing.Collection",
    "collections.abc.Collection",
    "typing.Generator",
    "collections.abc.Generator",
    "typing.Reversible",
    "collections.abc.Reversible",
}
_SETS = {
    "builtins.set",
    "builtins.frozenset",
    "typing.Set",
    "typing.FrozenSet",
    "typing.AbstractSet",
    "collections.abc.Set",
    "typing.MutableSet",
    "collections.abc.MutableSet",
}
_MAPS = {
    "builtins.dict",
    "typing.Dict",
    "typing.Mapping",
    "collections.abc.Mapping",
    "typing.MutableMapping",
    "collections.abc.MutableMapping",
}
_TUPLES = {"builtins.tuple", "typing.Tuple"}
_OPTIONAL = {"typing.Optional", "typing_extensions.Optional"}
_UNION = {"typing.Union", "typing_extensions.Union"}
_CALLABLE = {"typing.Callable", "collections.abc.Callable"}
_LITERAL = {"typing.Literal", "typing_extensions.Literal"}
_UNWRAP = {
    "typing.Final",
    "typing.ClassVar",
    "typing.Annotated",
    "typing.Required",
    "typing.NotRequired",
    "typing.ReadOnly",
    "typing_extensions.Final",
    "typing_extensions.Annotated",
    "typing_extensions.Required",
    "typing_extensions.NotRequired",
    "typing_extensions.ReadOnly",
}
# _typeshed.Incomplete is what stubgen writes where it could not infer a type.
_ANY = {"typing.Any", "builtins.object", "typing_extensions.Any", "_typeshed.Incomplete"}
_PARAMSPEC = {
    "typing.ParamSpec",
    "typing_extensions.ParamSpec",
    "typing.Concatenate",
    "typing_extensions.Concatenate",
}
_TVT = {
    "typing.TypeVarTuple",
    "typing_extensions.TypeVarTuple",
    "typing.Unpack",
    "typing_extensions.Unpack",
}
_SELF = {"typing.Self", "typing_extensions.Self"}


@dataclass
class Context:
    """What the table needs to know about the module an annotation appears in."""

    resolve_name: Callable[[str], str | None]  # local name → qualified name, None: unknown
    lookup_class: Callable[[str], MochiType | None]  # qualified → record/opaque, None: not ours
    int_mode: str = "int64"
    allow_partial: bool = False
    self_type: MochiType | None = None
    typevars: frozenset[str] = frozenset()
    depth: int = 0


def qualified(node: ast.expr, ctx: Context) -> str | None:
    if isinstance(node, ast.Name):
        return ctx.resolve_name(node.id)
    if isinstance(node, ast.Attribute):
        base = qualified(node.value, ctx)
        return f"{base}.{node.attr}" if base else None
    return None


def _args(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def to_mochi(node: ast.expr | None, ctx: Context, *, is_return: bool = False) -> MochiType | None:
    """The Mochi type of an annotation; None means "no value" (a None return)."""
    if node is None:  # unannotated (stubgen output is partial): Any
        return _any(ctx, "an unannotated value")
    if ctx.depth > 16:
        raise Refused("SkipUnsupportedTypingConstruct", "annotation nested too deeply")
    inner = Context(
        ctx.resolve_name,
        ctx.lookup_class,
        ctx.int_mode,
        ctx.allow_partial,
        ctx.self_type,
        ctx.typevars,
        ctx.depth + 1,
    )
    if isinstance(node, ast.Constant):
        if node.value is None:
            if is_return:
                return None
            raise Refused("SkipUnsupportedTypingConstruct", "a bare None is not a value type")
        if isinstance(node.value, str):
            try:
                parsed = ast.parse(node.value, mode="eval").body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                raise Refused(
                    "SkipForwardRef", f"unparseable forward reference {node.value[:60]!r}"
                ) from None
            return to_mochi(parsed, inner, is_return=is_return)
        raise Refused("SkipUnsupportedTypingConstruct", f"literal {node.value!r:.40} as a type")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([node.left, node.right], inner, "X | Y")
    if isinstance(node, ast.Subscript):
        return _generic(node, inner)
    name = qualified(node, ctx)
    if name is None:
        text = ast.unparse(node)[:60] if hasattr(ast, "unparse") else "?"
        if isinstance(node, ast.Name) and node.id in ctx.typevars:
            return _any(ctx, f"type variable {node.id}")
        raise Refused("SkipForwardRef", f"{text} does not resolve")
    return _named(name, ctx, is_return=is_return)


def _any(ctx: Context, what: str) -> MochiType:
    if ctx.allow_partial:
        return ANY
    raise Refused(
        "SkipUnsupportedTypingConstruct",
        f"{what} (Any) has no Mochi type; allow-partial = true maps it to an opaque any",
    )


def _named(name: str, ctx: Context, *, is_return: bool) -> MochiType | None:
    if name == NONE:
        if is_return:
            return None
        raise Refused("SkipUnsupportedTypingConstruct", "a bare None is not a value type")
    if name == "builtins.int":
        return BIGINT if ctx.int_mode == "bigint" else INT
    if name in _SCALARS:
        return _SCALARS[name]
    if name == "builtins.complex":
        raise Refused("SkipNoComplexType", "Mochi has no complex numbers")
    if name in ("builtins.bytearray", "builtins.memoryview"):
        raise Refused(
            "SkipBytearrayMutable", f"{name.rsplit('.', maxsplit=1)[-1]} is mutable shared memory"
        )
    if name in _ANY:
        return _any(ctx, name.rsplit(".", maxsplit=1)[-1])
    if name in _SELF:
        if ctx.self_type is None:
            raise Refused("SkipForwardRef", "Self outside a class")
        return ctx.self_type
    if name in _LISTS:
        return ListOf(_any(ctx, f"unparameterised {name.rsplit('.', maxsplit=1)[-1]}"))
    if name in _MAPS:
        return MapOf(STRING, _any(ctx, f"unparameterised {name.rsplit('.', maxsplit=1)[-1]}"))
    if name in _PARAMSPEC or name.endswith(".ParamSpec"):
        raise Refused("SkipParamSpec", name)
    if name in _TVT:
        raise Refused("SkipTypeVarTuple", name)
    if name in _CALLABLE:
        raise Refused("SkipParamSpec", "Callable without a parameter list")
    if name.startswith("typevar:"):
        return _any(ctx, f"type variable {name.split(':', 1)[1]}")
    found = ctx.lookup_class(name)
    if found is not None:
        return found
    if name.startswith(("typing.", "typing_extensions.", "collections.abc.", "types.")):
        raise Refused("SkipUnsupportedTypingConstruct", f"{name} is not in the type table")
    raise Refused("SkipForwardRef", f"{name} is not a type this package defines or the table knows")


def _union(members: list[ast.expr], ctx: Context, spelling: str) -> MochiType:
    flat: list[ast.expr] = []
    stack = list(members)
    while stack:
        item = stack.pop(0)
        if isinstance(item, ast.BinOp) and isinstance(item.op, ast.BitOr):
            stack[:0] = [item.left, item.right]
        else:
            flat.append(item)
    nones = [
        m
        for m in flat
        if (isinstance(m, ast.Constant) and m.value is None) or qualified(m, ctx) == NONE
    ]
    rest = [m for m in flat if m not in nones]
    if len(rest) != 1:
        raise Refused("SkipOpenUnion", f"{spelling} of {len(rest)} types has no Mochi equivalent")
    inner = to_mochi(rest[0], ctx)
    assert inner is not None
    return Optional(inner) if nones and not isinstance(inner, Optional) else inner


def _generic(node: ast.Subscript, ctx: Context) -> MochiType | None:
    base = qualified(node.value, ctx)
    args = _args(node.slice)
    if base is None:
        raise Refused("SkipForwardRef", f"{ast.unparse(node.value)[:60]} does not resolve")
    if base in _UNWRAP:
        return to_mochi(args[0], ctx)
    if base in _OPTIONAL:
        inner = to_mochi(args[0], ctx)
        assert inner is not None
        return inner if isinstance(inner, Optional) else Optional(inner)
    if base in _UNION:
        return _union(args, ctx, "Union")
    if base in _LISTS:
        return ListOf(_value(args[0], ctx))
    if base in _SETS:
        return SetOf(_value(args[0], ctx))
    if base in _MAPS:
        if len(args) != 2:
            raise Refused("SkipUnsupportedTypingConstruct", f"{base} needs two parameters")
        key = _value(args[0], ctx)
        if key not in (STRING, INT, BIGINT):
            raise Refused(
                "SkipUnsupportedTypingConstruct", f"map keys must be str or int, not {key.mochi()}"
            )
        return MapOf(key, _value(args[1], ctx))
    if base in _TUPLES:
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return ListOf(_value(args[0], ctx))
        if not args or (len(args) == 1 and isinstance(args[0], ast.Tuple) and not args[0].elts):
            raise Refused("SkipUnsupportedTypingConstruct", "the empty tuple")
        if any(isinstance(a, ast.Starred) for a in args):
            raise Refused("SkipTypeVarTuple", "unpacked tuple")
        return TupleOf(tuple(_value(a, ctx) for a in args))
    if base in _CALLABLE:
        return _callable(args, ctx)
    if base in _LITERAL:
        return _literal(args)
    if base in _TVT:
        raise Refused("SkipTypeVarTuple", base)
    if base in _PARAMSPEC:
        raise Refused("SkipParamSpec", base)
    if base in ("builtins.type", "typing.Type"):
        raise Refused("SkipUnsupportedTypingConstruct", "type[...] (class objects)")
    if base in (
        "typing.Awaitable",
        "collections.abc.Awaitable",
        "typing.Coroutine",
        "collections.abc.Coroutine",
    ):
        raise Refused("SkipUnsupportedTypingConstruct", "awaitables cross only as async def")
    found = ctx.lookup_class(base)
    if found is not None:
        return found  # a generic class of the package: opaque handle
    raise Refused("SkipUnsupportedTypingConstruct", f"{base}[...] is not in the type table")


def _value(node: ast.expr, ctx: Context) -> MochiType:
    result = to_mochi(node, ctx)
    if result is None:
        raise Refused("SkipUnsupportedTypingConstruct", "None as an element type")
    return result


def _callable(args: list[ast.expr], ctx: Context) -> MochiType:
    if len(args) != 2:
        raise Refused("SkipParamSpec", "Callable without [[params], result]")
    params, result = args
    if isinstance(params, ast.Constant) and params.value is Ellipsis:
        raise Refused("SkipParamSpec", "Callable[..., R]")
    if not isinstance(params, ast.List):
        raise Refused("SkipParamSpec", "Callable over a ParamSpec")
    return Function(
        tuple(_value(p, ctx) for p in params.elts), to_mochi(result, ctx, is_return=True)
    )


def _literal(args: list[ast.expr]) -> MochiType:
    kinds: set[type] = set()
    for arg in args:
        if not isinstance(arg, ast.Constant) or arg.value is None:
            raise Refused(
                "SkipUnsupportedTypingConstruct", "Literal of something other than scalars"
            )
        kinds.add(type(arg.value))
    table: dict[type, Scalar] = {int: INT, str: STRING, bool: BOOL, bytes: BYTES, float: FLOAT}
    if len(kinds) != 1 or next(iter(kinds)) not in table:
        raise Refused("SkipOpenUnion", "Literal mixing kinds of values")
    return table[next(iter(kinds))]
