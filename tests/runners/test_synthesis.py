"""Synthesis from real package sources and stubs, emitted code compiled with the real C
compiler, and called in a fresh interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from mochi_pybridge.runners.bindings.emit import render_all

from ..support.mochi_grammar import parse
from .bindings_helpers import build_wrapper, call, plan_for, write_package

LYING = {
    "lying/__init__.py": """
        import asyncio
        from dataclasses import dataclass
        from typing import Callable, Iterator, NamedTuple, Optional, TypedDict

        class Point(NamedTuple):
            x: int
            y: int

        class Movie(TypedDict):
            title: str
            year: int

        @dataclass(frozen=True)
        class Pair:
            left: str
            right: float

        class Counter:
            def __init__(self, start: int) -> None:
                self.n = start
            def bump(self, by: int = 1) -> int:
                self.n += by
                return self.n
            @property
            def value(self) -> int:
                return self.n
            def _hidden(self) -> int:
                return 0
            def __len__(self) -> int:
                return 0

        def add(a: int, b: int) -> int:
            return a + b

        def liar() -> int:
            return "not an int"  # the lie: the stub says int

        def deep_liar() -> list[int]:
            return [1, 2, "three"]

        def record_liar() -> Movie:
            return {"title": "x"}  # year missing

        def names(n: int) -> list[str]:
            return [str(i) for i in range(n)]

        def lazy(n: int) -> Iterator[int]:
            return iter(range(n))

        def movie(title: str) -> Movie:
            return {"title": title, "year": 1999}

        def point() -> Point:
            return Point(1, 2)

        def maybe(flag: bool) -> Optional[str]:
            return "yes" if flag else None

        def load(type: str, match: int = 2) -> dict[str, int]:
            return {type: match}

        async def later(x: int) -> int:
            await asyncio.sleep(0)
            return x * 2

        def big() -> int:
            return 2 ** 70

        def apply(f: "Callable[[int], int]", x: int) -> int:
            return f(x)
    """,
    "lying/py.typed": "",
}


@pytest.fixture(scope="module")
def lying(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = write_package(tmp_path_factory.mktemp("lying"), LYING)
    out = root / "wrap"
    build_wrapper(root, out, "lying")
    return root, out


def test_wrapper_calls_real_functions_and_returns_right_values(lying: tuple[Path, Path]) -> None:
    root, out = lying
    result = call(
        root,
        out,
        """
        import _mochi_lying as m
        c = m.Counter_new(5)
        result = {
            "add": m.add(2, 3), "names": m.names(3), "lazy": m.lazy(4),
            "movie": m.movie("Heat"), "point": m.point(), "maybe": [m.maybe(True), m.maybe(False)],
            "load": m.load_("k", None), "load2": m.load_("k", 7), "later": m.later_sync(21),
            "bump": [m.Counter_bump(c, None), m.Counter_bump(c, 10)], "value": m.Counter_value(c),
            "apply": m.apply(lambda v: v + 1, 41),
        }
    """,
    )
    assert result == {
        "add": 5, "names": ["0", "1", "2"], "lazy": [0, 1, 2, 3],
        "movie": {"title": "Heat", "year": 1999}, "point": {"x": 1, "y": 2}, "maybe": ["yes", None],
        "load": {"k": 2}, "load2": {"k": 7}, "later": 42, "bump": [6, 16], "value": 16, "apply": 42,
    }  # fmt: skip


def test_wrapper_lying_package_raises_PythonTypeMismatch(lying: tuple[Path, Path]) -> None:
    root, out = lying
    result = call(
        root,
        out,
        """
        import _mochi_lying as m
        result = {}
        for name in ("liar", "deep_liar", "record_liar", "big"):
            try:
                getattr(m, name)()
                result[name] = "no error"
            except m.PythonTypeMismatch as exc:
                result[name] = [str(exc), isinstance(exc, TypeError)]
        try:
            m.add("x", 1)
        except TypeError as exc:
            result["arg"] = [type(exc).__name__, str(exc)]
    """,
    )
    assert result["liar"] == ["liar: declared to return int, got str", True]
    assert result["deep_liar"] == [
        "deep_liar: declared to return list<int>, got list item 2: str",
        True,
    ]
    assert result["record_liar"] == [
        "record_liar: declared to return Movie, got record without field year",
        True,
    ]
    assert result["big"] == ["big: declared to return int, got int out of the 64-bit range", True]
    assert result["arg"] == ["PythonTypeMismatch", "add: argument 1 declared int, got str"]


def test_wrapper_non_strict_returns_warn_instead(tmp_path: Path) -> None:
    root = write_package(tmp_path, LYING)
    out = tmp_path / "wrap"
    build_wrapper(root, out, "lying", strict=False)
    result = call(
        root,
        out,
        """
        import warnings
        import _mochi_lying as m
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = m.liar()
        result = [value, [str(w.message) for w in caught]]
    """,
    )
    assert result == ["not an int", ["liar: declared to return int, got str"]]


def test_wrapper_bigint_mode_accepts_big_ints(tmp_path: Path) -> None:
    root = write_package(tmp_path, LYING)
    out = tmp_path / "wrap"
    outputs = build_wrapper(root, out, "lying", int_mode="bigint")
    assert "extern fun lying.big(): bigint" in outputs.shim
    assert call(root, out, "import _mochi_lying as m\nresult = str(m.big())") == str(2**70)


def test_shim_parses_renames_reserved_words_and_declares_records(lying: tuple[Path, Path]) -> None:
    root, _ = lying
    shim = render_all(plan_for(root, "lying"), "lying", "1.0").shim
    parse(shim)
    assert "extern fun lying.load_(type_: string, match_: int?): map<string, int>" in shim
    assert "type Movie { title: string, year: int }" in shim
    assert "type Point { x: int, y: int }" in shim
    assert "type Pair { left: string, right: float }" in shim
    assert "extern type Counter" in shim
    assert "extern fun lying.Counter_new(start: int): Counter" in shim
    assert "extern fun lying.later_sync(x: int): int" in shim
    assert "extern fun lying.apply(f: fun(int): int, x: int): int" in shim


def test_skipped_lists_private_and_dunder_methods(lying: tuple[Path, Path]) -> None:
    root, _ = lying
    skipped = {(s.item, s.token) for s in plan_for(root, "lying").skipped}
    assert ("lying.Counter._hidden", "SkipPrivateName") in skipped
    assert ("lying.Counter.__len__", "SkipDunder") in skipped


def test_synthesis_is_deterministic(lying: tuple[Path, Path]) -> None:
    root, _ = lying
    first = render_all(plan_for(root, "lying"), "lying", "1.0")
    second = render_all(plan_for(root, "lying"), "lying", "1.0")
    assert first == second


STUBBED = {
    "pkg/__init__.pyi": """
        from typing import overload, Any, Callable, ParamSpec
        from typing_extensions import TypeVarTuple, Unpack
        from .api import get as get, Session as Session
        from .hidden import helper
        __all__ = ["get", "Session", "choose", "either", "cplx", "mutable", "anyfn", "spec",
                   "many", "future", "Meta", "Props", "missing", "vague", "native"]
        P = ParamSpec("P")
        Ts = TypeVarTuple("Ts")
        @overload
        def choose(x: int) -> int: ...
        @overload
        def choose(x: complex) -> complex: ...
        @overload
        def either(x: int) -> int: ...
        @overload
        def either(x: str) -> str: ...
        def cplx() -> complex: ...
        def mutable(b: bytearray) -> None: ...
        def anyfn() -> Any: ...
        def spec(f: Callable[P, int]) -> int: ...
        def many(*args: Unpack[Ts]) -> tuple[Unpack[Ts]]: ...
        def future() -> "Later": ...
        def vague(x: int | str) -> int: ...
        def native(*args, **kwargs): ...
        class MetaType(type): ...
        class Meta(metaclass=MetaType):
            def m(self) -> int: ...
        class Props:
            @property
            def size(self) -> int: ...
            @size.setter
            def size(self, value: int) -> None: ...
    """,
    "pkg/api.pyi": """
        class Session:
            def get(self, url: str, *, timeout: float | None = None) -> str: ...
        def get(url: str, **kwargs: object) -> str: ...
    """,
    "pkg/hidden.pyi": "def helper() -> int: ...\n",
}


def test_stubs_reexports_overloads_and_every_refusal(tmp_path: Path) -> None:
    root = write_package(tmp_path, STUBBED)
    plan = plan_for(root, "pkg")
    functions = {f.mochi_name: f for f in plan.functions}
    assert "get" in functions  # re-exported with `as`
    assert "helper" not in functions  # imported without `as`: not part of the API
    assert "Session_get" in functions  # a method of a re-exported class
    assert functions["choose"].result is not None  # the single arm that maps
    pairs = {(s.item, s.token) for s in plan.skipped}
    for item, token in [
        ("pkg.either", "SkipOverloadAmbiguity"),
        ("pkg.cplx", "SkipNoComplexType"),
        ("pkg.mutable", "SkipBytearrayMutable"),
        ("pkg.anyfn", "SkipUnsupportedTypingConstruct"),
        ("pkg.spec", "SkipParamSpec"),
        ("pkg.many", "SkipTypeVarTuple"),
        ("pkg.future", "SkipForwardRef"),
        ("pkg.vague", "SkipOpenUnion"),
        ("pkg.native", "SkipCFunctionWithoutStubs"),
        ("pkg.Meta", "SkipMetaclass"),
        ("pkg.Props.size", "SkipDescriptor"),
        ("pkg.missing", "SkipDynamicAttribute"),
        ("pkg.api.get(**kwargs)", "SkipParamSpec"),  # **kwargs dropped, the function kept
    ]:
        assert (item, token) in pairs, (item, token, sorted(pairs))
    shim = render_all(plan, "pkg", "1.0").shim
    parse(shim)
    assert "extern fun pkg.get(url: string): string" in shim
    assert (
        "extern fun pkg.Session_get(self_: Session, url: string, timeout: float?): string" in shim
    )


def test_untyped_package_without_sources_is_SkipUntypedPackage(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "nothing_here")
    assert [(s.item, s.token) for s in plan.skipped] == [("nothing_here", "SkipUntypedPackage")]


def test_hostile_stub_files_skip_a_module_not_the_package(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "evil/__init__.pyi": "from .deep import f as f\nfrom .ok import g as g\n",
        "evil/deep.pyi": "x: " + "list[" * 5000 + "int" + "]" * 5000 + "\n",
        "evil/ok.pyi": "def g() -> int: ...\n",
    })  # fmt: skip
    (root / "evil" / "huge.pyi").write_bytes(b"x = 1\n" * 1_000_000)
    plan = plan_for(root, "evil")
    assert [f.mochi_name for f in plan.functions] == ["g"]
    assert any(s.token == "SkipForwardRef" and "evil.deep" in s.item for s in plan.skipped)


def test_persistent_async_mode_keeps_one_loop(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "loopy/__init__.py": (
            "import asyncio\n\nLOOPS = []\n\n"
            "async def loops_seen() -> int:\n"
            "    LOOPS.append(asyncio.get_running_loop())  # kept alive: ids cannot be reused\n"
            "    return len({id(loop) for loop in LOOPS})\n"
        ),
        "loopy/py.typed": "",
    })  # fmt: skip
    from mochi_pybridge.runners.bindings.emit import render_all as render

    for mode, same in (("persistent", True), ("per-call", False)):
        out = tmp_path / mode
        out.mkdir()
        outputs = render(plan_for(root, "loopy"), "loopy", "1.0", async_mode=mode)
        (out / "loopy_externs.py").write_text(outputs.sidecar)
        result = call(
            root,
            out,
            "import loopy_externs as m\nm.loops_seen_sync()\nresult = m.loops_seen_sync()",
        )
        assert result == (1 if same else 2)


def test_sidecar_names_never_shadow_the_wrapped_parameters(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "shadow/__init__.py": (
            "def f(_kw: int, _r: int, _module: int = 3, _mochi: int = 4) -> list[int]:\n"
            "    return [_kw, _r, _module, _mochi]\n"
        ),
        "shadow/py.typed": "",
    })  # fmt: skip
    out = tmp_path / "wrap"
    build_wrapper(root, out, "shadow")
    assert call(
        root, out, "import _mochi_shadow as m\nresult = [m.f(1, 2, None, None), m.f(1, 2, 5, 6)]"
    ) == [
        [1, 2, 3, 4],
        [1, 2, 5, 6],
    ]


def test_records_nested_in_containers_cross_as_dicts(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "nest/__init__.py": (
            "from typing import Iterator, NamedTuple, Optional\n"
            "from dataclasses import dataclass\n\n"
            "class P(NamedTuple):\n    x: int\n    y: int\n\n"
            "@dataclass(frozen=True)\nclass Box:\n    name: str\n    points: list[P]\n\n"
            "def many() -> Iterator[P]:\n    return iter([P(1, 2), P(3, 4)])\n\n"
            "def table() -> dict[str, P]:\n    return {'a': P(5, 6)}\n\n"
            "def maybe(flag: bool) -> Optional[Box]:\n"
            "    return Box('b', [P(7, 8)]) if flag else None\n\n"
            "def pair() -> tuple[P, int]:\n    return (P(0, 0), 1)\n"
        ),
        "nest/py.typed": "",
    })  # fmt: skip
    out = tmp_path / "wrap"
    build_wrapper(root, out, "nest")
    result = call(
        root,
        out,
        """
import _mochi_nest as m
result = [m.many(), m.table(), m.maybe(True), m.maybe(False), list(m.pair())]
""",
    )
    assert result == [
        [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
        {"a": {"x": 5, "y": 6}},
        {"name": "b", "points": [{"x": 7, "y": 8}]},
        None,
        [{"x": 0, "y": 0}, 1],
    ]


def test_record_fields_named_like_mochi_keywords_are_renamed_on_both_sides(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "kw/__init__.py": (
            "from typing import TypedDict, NamedTuple\n\n"
            "class Token(TypedDict):\n    type: str\n    match: int\n\n"
            "class Span(NamedTuple):\n    load: int\n    end: int\n\n"
            "def token() -> Token:\n    return {'type': 'word', 'match': 3}\n\n"
            "def spans() -> list[Span]:\n    return [Span(1, 2)]\n"
        ),
        "kw/py.typed": "",
    })  # fmt: skip
    out = tmp_path / "wrap"
    outputs = build_wrapper(root, out, "kw")
    assert "type Token { type_: string, match_: int }" in outputs.shim
    parse(outputs.shim)
    result = call(root, out, "import _mochi_kw as m\nresult = [m.token(), m.spans()]")
    assert result == [{"type_": "word", "match_": 3}, [{"load_": 1, "end": 2}]]


def test_record_arguments_reach_python_as_the_packages_own_types(tmp_path: Path) -> None:
    root = write_package(tmp_path, {
        "rec/__init__.py": (
            "from typing import NamedTuple, Optional, TypedDict\n"
            "from dataclasses import dataclass\n\n"
            "class P(NamedTuple):\n    x: int\n    y: int\n\n"
            "class Tok(TypedDict):\n    type: str\n    n: int\n\n"
            "@dataclass(frozen=True)\nclass Box:\n    name: str\n    points: list[P]\n\n"
            "def norm(p: P) -> int:\n"
            "    assert type(p) is P, type(p)\n"
            "    return p.x * p.x + p.y * p.y\n\n"
            "def repeat(t: Tok) -> str:\n"
            "    assert t == {'type': 'ab', 'n': 2}, t\n"
            "    return t['type'] * t['n']\n\n"
            "def total(boxes: list[Box]) -> int:\n"
            "    assert all(type(b) is Box and all(type(p) is P for p in b.points) for b in boxes)\n"
            "    return sum(p.x for b in boxes for p in b.points)\n\n"
            "def given(p: Optional[P] = None) -> bool:\n    return type(p) is P\n"
        ),
        "rec/py.typed": "",
    })  # fmt: skip
    out = tmp_path / "wrap"
    build_wrapper(root, out, "rec")
    result = call(
        root,
        out,
        """
import _mochi_rec as m
boxes = [{"name": "b", "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}]
result = [m.norm({"x": 3, "y": 4}), m.repeat({"type_": "ab", "n": 2}), m.total(boxes),
          m.given({"x": 1, "y": 1}), m.given(None)]
""",
    )
    assert result == [25, "abab", 4, True, False]
