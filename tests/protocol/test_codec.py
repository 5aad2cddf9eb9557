from __future__ import annotations

import datetime

import msgpack
import pytest

from mochi_pybridge.protocol import Limits, LocalProtocolError, RemoteProtocolError
from mochi_pybridge.protocol.codec import decode_body, encode_body, to_wire_value

LIMITS = Limits(
    max_str_len=8, max_bin_len=8, max_array_len=4, max_map_len=3, max_depth=3, max_frame_size=4096
)


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def test_msgpack_C_extension_is_loaded() -> None:
    # The pure-Python fallback behaves differently on hostile input (STYLE §5).
    assert msgpack.Unpacker.__module__ == "msgpack._cmsgpack"


def test_decode_body_roundtrip_types() -> None:
    obj = {"a": b"b", "b": [True, None, 1.5, "s"], "c": {"d": -3}}
    assert decode_body(pack(obj), LIMITS) == {
        "a": b"b",
        "b": (True, None, 1.5, "s"),
        "c": {"d": -3},
    }


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (pack(msgpack.ExtType(5, b"x")), "extension type"),
        (
            msgpack.packb(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), datetime=True),
            "timestamp",
        ),
        (b"\x82\xa1a\x01\xa1a\x02", "duplicate key"),
        (b"\x81\x01\x02", "int key"),
        (b"\x81\xc4\x01k\x02", "bytes key"),
        (b"\xa2\xff\xfe", "invalid UTF-8"),
        (pack("x" * 9), "str too long"),
        (pack(b"x" * 9), "bin too long"),
        (pack([1, 2, 3, 4, 5]), "array too long"),
        (pack({"a": 1, "b": 2, "c": 3, "d": 4}), "map too large"),
        (pack([[[[1]]]]), "too deep"),
        (pack({"a": {"b": {"c": {}}}}), "too deep (maps)"),
        (pack(1) + pack(2), "trailing data"),
        (b"\xc1", "reserved byte"),
        (b"\x92\x01", "truncated"),
        (b"\xdd\xff\xff\xff\xff", "array32 header claiming 4G elements"),
        (b"\x91" * 3000 + b"\x01", "nesting past msgpack's own stack"),
    ],
)
def test_decode_body_rejects(body: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(body, LIMITS)


def test_decode_body_depth_at_limit_is_fine() -> None:
    assert decode_body(pack([[[1]]]), LIMITS) == (((1,),),)


def test_to_wire_value_accepts_and_normalises() -> None:
    assert to_wire_value({"a": (1, [2])}, LIMITS) == {"a": [1, [2]]}


@pytest.mark.parametrize(
    "value",
    [
        {1: 2},
        "x" * 9,
        b"x" * 9,
        [1, 2, 3, 4, 5],
        {"a": 1, "b": 2, "c": 3, "d": 4},
        [[[[1]]]],
        2**64,
        -(2**63) - 1,
        "\ud800",
        {1.5},
        object(),
    ],
)
def test_to_wire_value_rejects(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        to_wire_value(value, LIMITS)


def test_encode_body_is_deterministic_in_insertion_order() -> None:
    assert encode_body({"b": 1, "a": 2}) == b"\x82\xa1b\x01\xa1a\x02"
