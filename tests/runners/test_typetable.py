"""Every row of the closed type table (SPEC §5), and the refusals."""

from __future__ import annotations

import ast

import pytest

from mochi_pybridge.runners.bindings.mochi_types import Opaque, Record
from mochi_pybridge.runners.bindings.typetable import SKIP_TOKENS, Context, Refused, to_mochi

IMPORTS = {
    "Optional": "typing.Optional", "Union": "typing.Union", "List": "typing.List",
    "Sequence": "typing.Sequence", "Iterable": "typing.Iterable", "Iterator": "typing.Iterator",
    "Mapping": "typing.Mapping", "Dict": "typing.Dict", "Set": "typing.Set",
    "FrozenSet": "typing.FrozenSet", "Tuple": "typing.Tuple", "Callable": "typing.Callable",
    "Literal": "typing.Literal", "Final": "typing.Final", "ClassVar": "typing.ClassVar",
    "Annotated": "typing.Annotated", "Required": "typing.Required",
    "NotRequired": "typing.NotRequired", "Any": "typing.Any", "ParamSpec": "typing.ParamSpec",
    "Unpack": "typing.Unpack", "Ts": "typing.TypeVarTuple", "Self": "typing.Self",
    "abc": "collections.abc", "Incomplete": "_typeshed.Incomplete",
    "Point": "pkg.Point", "Handle": "pkg.Handle",
}  # fmt: skip


def resolve(name: str) -> str | None:
    if name in IMPORTS:
        return IMPORTS[name]
    if name in ("int", "float", "bool", "str", "bytes", "complex", "object", "list", "dict",
                "set", "frozenset", "tuple", "bytearray", "memoryview", "type", "None"):  # fmt: skip
        return f"builtins.{name}"
    if name == "T":
        return "typevar:T"
    return None


CLASSES = {"pkg.Point": Record("Point", ()), "pkg.Handle": Opaque("Handle")}


def mochi(annotation: str, *, is_return: bool = False, **options: object) -> str | None:
    ctx = Context(resolve_name=resolve, lookup_class=CLASSES.get, **options)  # type: ignore[arg-type]
    result = to_mochi(ast.parse(annotation, mode="eval").body, ctx, is_return=is_return)
    return None if result is None else result.mochi()


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("int", "int"), ("float", "float"), ("bool", "bool"), ("str", "string"),
        ("bytes", "bytes"),
        ("list[int]", "list<int>"), ("List[str]", "list<string>"),
        ("Sequence[float]", "list<float>"), ("Iterable[int]", "list<int>"),
        ("Iterator[bytes]", "list<bytes>"), ("tuple[int, ...]", "list<int>"),
        ("abc.Sequence[int]", "list<int>"),
        ("set[int]", "set<int>"), ("frozenset[str]", "set<string>"), ("FrozenSet[int]", "set<int>"),
        ("dict[str, int]", "map<string, int>"), ("Mapping[int, str]", "map<int, string>"),
        ("tuple[int, str]", "tuple<int, string>"), ("Tuple[bool, float, str]", "tuple<bool, float, string>"),
        ("int | None", "int?"), ("Optional[str]", "string?"), ("Union[int, None]", "int?"),
        ("None | list[int]", "list<int>?"), ("Optional[Optional[int]]", "int?"),
        ("Callable[[int, str], bool]", "fun(int, string): bool"),
        ("Callable[[], None]", "fun()"),
        ("Literal['a', 'b']", "string"), ("Literal[1, 2]", "int"), ("Literal[True]", "bool"),
        ("Final[int]", "int"), ("ClassVar[str]", "string"), ("Annotated[int, 'meta']", "int"),
        ("Required[int]", "int"), ("NotRequired[str]", "string"),
        ("Point", "Point"), ("Handle", "Handle"), ("list[Point]", "list<Point>"),
        ("'int'", "int"), ("'list[Handle]'", "list<Handle>"),
        ("dict[str, list[tuple[int, str]]]", "map<string, list<tuple<int, string>>>"),
    ],
)  # fmt: skip
def test_type_table_row(annotation: str, expected: str) -> None:
    assert mochi(annotation) == expected


def test_type_table_none_return_means_no_value() -> None:
    assert mochi("None", is_return=True) is None


def test_type_table_int_mode_bigint() -> None:
    assert mochi("int", int_mode="bigint") == "bigint"
    assert mochi("list[int]", int_mode="bigint") == "list<bigint>"


@pytest.mark.parametrize(
    ("annotation", "token"),
    [
        ("complex", "SkipNoComplexType"),
        ("int | str", "SkipOpenUnion"), ("Union[int, str, None]", "SkipOpenUnion"),
        ("Literal[1, 'a']", "SkipOpenUnion"),
        ("Callable[..., int]", "SkipParamSpec"), ("Callable", "SkipParamSpec"),
        ("Unpack[Ts]", "SkipTypeVarTuple"), ("tuple[*Ts]", "SkipTypeVarTuple"),
        ("Undefined", "SkipForwardRef"), ("'Nowhere'", "SkipForwardRef"),
        ("'not valid('", "SkipForwardRef"),
        ("Any", "SkipUnsupportedTypingConstruct"), ("object", "SkipUnsupportedTypingConstruct"),
        ("Incomplete", "SkipUnsupportedTypingConstruct"), ("T", "SkipUnsupportedTypingConstruct"),
        ("dict[float, int]", "SkipUnsupportedTypingConstruct"),
        ("type[int]", "SkipUnsupportedTypingConstruct"), ("None", "SkipUnsupportedTypingConstruct"),
        ("bytearray", "SkipBytearrayMutable"), ("memoryview", "SkipBytearrayMutable"),
        ("Self", "SkipForwardRef"),
    ],
)  # fmt: skip
def test_type_table_refuses(annotation: str, token: str) -> None:
    with pytest.raises(Refused) as info:
        mochi(annotation)
    assert info.value.token == token


def test_type_table_allow_partial_turns_any_into_opaque_any() -> None:
    assert mochi("Any", allow_partial=True) == "any"
    assert mochi("list[object]", allow_partial=True) == "list<any>"
    assert mochi("T", allow_partial=True) == "any"


def test_type_table_refuses_absurd_nesting() -> None:
    deep = "list[" * 40 + "int" + "]" * 40
    with pytest.raises(Refused, match="nested too deeply"):
        mochi(deep)


def test_skip_tokens_are_the_specs() -> None:
    assert len(SKIP_TOKENS) == 18
    assert len(set(SKIP_TOKENS)) == 18
