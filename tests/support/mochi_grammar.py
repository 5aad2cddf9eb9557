"""A recogniser of the subset of Mochi's grammar a shim uses (shared/mochi-grammar.md).

Tokens: identifiers (letters, symbols, digits, underscore), strings, punctuation; whitespace,
``;`` and comments separate. Reserved words never count as identifiers. ``parse`` raises
``ShimSyntaxError`` at the first token the grammar does not allow."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

RESERVED = frozenset(
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


class ShimSyntaxError(Exception):
    pass


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, string, punct
    text: str
    line: int


def _ident_start(c: str) -> bool:
    if c.isascii():  # ASCII symbols (< > ? | …) are punctuation
        return c == "_" or c.isalpha()
    return c.isalpha() or unicodedata.category(c).startswith("S")


def _ident_char(c: str) -> bool:
    return _ident_start(c) or c.isdigit()


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, line = 0, 1
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r;":
            i += 1
        elif text.startswith("//", i) or c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ShimSyntaxError(f"line {line}: unterminated comment")
            line += text.count("\n", i, end)
            i = end + 2
        elif c == '"':
            match = re.compile(r'"(?:[^"\\\n]|\\.)*"').match(text, i)
            if not match:
                raise ShimSyntaxError(f"line {line}: unterminated string")
            tokens.append(Token("string", match.group(0), line))
            i = match.end()
        elif _ident_start(c):
            j = i + 1
            while j < len(text) and _ident_char(text[j]):
                j += 1
            word = text[i:j]
            tokens.append(Token("keyword" if word in RESERVED else "ident", word, line))
            i = j
        elif c in "(){}<>,.:?=|":
            tokens.append(Token("punct", c, line))
            i += 1
        else:
            raise ShimSyntaxError(f"line {line}: unexpected character {c!r}")
    return tokens


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def fail(self, wanted: str) -> ShimSyntaxError:
        tok = self.peek()
        where = f"line {tok.line}: {tok.text!r}" if tok else "end of input"
        return ShimSyntaxError(f"expected {wanted} at {where}")

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.text == text and tok.kind != "string":
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.fail(repr(text))

    def ident(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind != "ident":
            raise self.fail("an identifier")
        self.i += 1
        return tok.text

    def string(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind != "string":
            raise self.fail("a string")
        self.i += 1
        return tok.text

    def program(self) -> list[str]:
        kinds = []
        if self.accept("package"):
            self.ident()
        while self.peek() is not None:
            kinds.append(self.statement())
        return kinds

    def statement(self) -> str:
        if self.accept("import"):
            tok = self.peek()
            if tok is not None and tok.kind == "ident":
                self.ident()
            self.string()
            if self.accept("as"):
                self.ident()
            self.accept("auto")
            return "import"
        if self.accept("extern"):
            if self.accept("fun"):
                self.dotted()
                self.expect("(")
                if not self.accept(")"):
                    self.param()
                    while self.accept(","):
                        self.param()
                    self.expect(")")
                if self.accept(":"):
                    self.typeref()
                return "extern fun"
            if self.accept("var") or self.accept("let"):
                self.dotted()
                self.expect(":")
                self.typeref()
                return "extern var"
            if self.accept("type"):
                self.ident()
                return "extern type"
            tok = self.peek()
            if tok is not None and tok.text == "object":
                self.i += 1
                self.ident()
                return "extern object"
            raise self.fail("fun, var, let, type or object after extern")
        if self.accept("type"):
            self.ident()
            if self.accept("="):
                self.typeref()
                return "type alias"
            self.expect("{")
            self.field()
            while True:
                self.accept(",")
                if self.accept("}"):
                    return "type"
                self.field()
        raise self.fail("a statement")

    def dotted(self) -> None:
        self.ident()
        while self.accept("."):
            self.ident()

    def param(self) -> None:
        self.ident()
        if self.accept(":"):
            self.typeref()

    def field(self) -> None:
        self.ident()
        self.expect(":")
        self.typeref()

    def typeref(self) -> None:
        if self.accept("fun"):
            self.expect("(")
            if not self.accept(")"):
                self.typeref()
                while self.accept(","):
                    self.typeref()
                self.expect(")")
            if self.accept(":"):
                self.typeref()
        elif self.accept("{"):
            if not self.accept("}"):
                self.field()
                while self.accept(","):
                    if self.accept("}"):
                        break
                    self.field()
                else:
                    self.expect("}")
        else:
            self.ident()
            if self.accept("<"):
                self.typeref()
                while self.accept(","):
                    self.typeref()
                self.expect(">")
        self.accept("?")


def parse(text: str) -> list[str]:
    """The kinds of statement in ``text``; ShimSyntaxError if it is not a valid shim."""
    return Parser(tokenize(text)).program()
