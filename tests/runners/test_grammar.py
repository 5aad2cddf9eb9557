"""The grammar recogniser itself: it accepts the documented example and refuses near misses."""

from __future__ import annotations

import pytest

from ..support.mochi_grammar import ShimSyntaxError, parse

EXAMPLE = """
// mochi-pybridge shim for requests 2.32.3 — 41 items, 7 skipped
import python "requests" as requests

extern type Response
type Timeout { connect: float, read: float? }

extern var requests.__version__: string
extern fun requests.get(url: string, params: map<string, string>?, timeout: float?): Response
extern fun requests.Response_json(self_: Response): map<string, string>
extern fun requests.load_(fp: Response): string   # renamed: `load` is reserved
extern fun requests.on_done(cb: fun(int, string): bool)
"""


def test_parse_accepts_the_documented_shim() -> None:
    kinds = parse(EXAMPLE)
    assert kinds.count("extern fun") == 4
    assert "type" in kinds and "extern type" in kinds and "extern var" in kinds


@pytest.mark.parametrize(
    "bad",
    [
        "extern fun requests.load(fp: Response): string",  # reserved word as a name
        "extern fun requests.f(type: int): int",  # reserved parameter name
        "extern python fun requests.f(): int",  # not accepted after extern
        "extern type a.b",  # extern type takes one identifier
        "type Empty { }",  # a record needs a field
        "extern fun requests.f(x: list<int): int",  # unclosed generic
        "import python requests as r",  # the module is a string
    ],
)
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(ShimSyntaxError):
        parse(bad)
