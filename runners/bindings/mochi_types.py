"""Mochi types as data, rendered two ways: as Mochi source (the shim) and as a compact
descriptor the generated C checks values against (the wrapper).

Descriptor grammar (one string per type, no spaces):
    i int64 | I bigint | f float | b bool | s string | y bytes | a any
    L<T> list | S<T> set | M<K,V> map | T<A,B,...> tuple | O<T> optional
    F callable | R<Name;field:T;...> record (a dict with those keys) | H<Name> opaque handle
"""

from __future__ import annotations

from dataclasses import dataclass


class MochiType:
    def mochi(self) -> str:
        raise NotImplementedError

    def descriptor(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Scalar(MochiType):
    name: str  # int, bigint, float, bool, string, bytes, any

    def mochi(self) -> str:
        return self.name

    def descriptor(self) -> str:
        return {
            "int": "i",
            "bigint": "I",
            "float": "f",
            "bool": "b",
            "string": "s",
            "bytes": "y",
            "any": "a",
        }[self.name]


@dataclass(frozen=True, slots=True)
class ListOf(MochiType):
    item: MochiType

    def mochi(self) -> str:
        return f"list<{self.item.mochi()}>"

    def descriptor(self) -> str:
        return f"L<{self.item.descriptor()}>"


@dataclass(frozen=True, slots=True)
class SetOf(MochiType):
    item: MochiType

    def mochi(self) -> str:
        return f"set<{self.item.mochi()}>"

    def descriptor(self) -> str:
        return f"S<{self.item.descriptor()}>"


@dataclass(frozen=True, slots=True)
class MapOf(MochiType):
    key: MochiType
    value: MochiType

    def mochi(self) -> str:
        return f"map<{self.key.mochi()}, {self.value.mochi()}>"

    def descriptor(self) -> str:
        return f"M<{self.key.descriptor()},{self.value.descriptor()}>"


@dataclass(frozen=True, slots=True)
class TupleOf(MochiType):
    items: tuple[MochiType, ...]

    def mochi(self) -> str:
        return "tuple<" + ", ".join(t.mochi() for t in self.items) + ">"

    def descriptor(self) -> str:
        return "T<" + ",".join(t.descriptor() for t in self.items) + ">"


@dataclass(frozen=True, slots=True)
class Optional(MochiType):
    inner: MochiType

    def mochi(self) -> str:
        return f"{self.inner.mochi()}?"

    def descriptor(self) -> str:
        return f"O<{self.inner.descriptor()}>"


@dataclass(frozen=True, slots=True)
class Function(MochiType):
    params: tuple[MochiType, ...]
    result: MochiType | None  # None: no return value

    def mochi(self) -> str:
        ret = f": {self.result.mochi()}" if self.result is not None else ""
        return "fun(" + ", ".join(p.mochi() for p in self.params) + ")" + ret

    def descriptor(self) -> str:
        return "F"


@dataclass(frozen=True, slots=True)
class Record(MochiType):
    """Fields carry their Mochi names (reserved words renamed); ``python_names`` are the
    attribute or key names on the Python side, in the same order."""

    name: str
    fields: tuple[tuple[str, MochiType], ...] = ()
    python_names: tuple[str, ...] = ()

    def mochi(self) -> str:
        return self.name

    def descriptor(self) -> str:
        inner = "".join(f";{name}:{t.descriptor()}" for name, t in self.fields)
        return f"R<{self.name}{inner}>"


@dataclass(frozen=True, slots=True)
class Opaque(MochiType):
    name: str

    def mochi(self) -> str:
        return self.name

    def descriptor(self) -> str:
        return f"H<{self.name}>"


INT = Scalar("int")
BIGINT = Scalar("bigint")
FLOAT = Scalar("float")
BOOL = Scalar("bool")
STRING = Scalar("string")
BYTES = Scalar("bytes")
ANY = Scalar("any")
