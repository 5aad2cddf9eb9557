"""msgpack bodies <-> plain values, with every limit of ``Limits`` enforced.

Decoding uses one-shot ``unpackb`` per frame (the frame length already bounds it), so no decoder
state survives an error, trailing bytes are caught as ``ExtraData``, and all of msgpack's own
header-time limits apply. Extension types (timestamps included) and duplicate map keys are
refused; map keys must be ``str``; strings must be valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn, TypeAlias

import msgpack

from mochi_pybridge.protocol.errors import LocalProtocolError, RemoteProtocolError, show
from mochi_pybridge.protocol.limits import Limits

# What may travel on the wire. Decoded arrays are tuples and maps are dicts with str keys.
Value: TypeAlias = (
    bool | int | float | str | bytes | Sequence["Value"] | Mapping[str, "Value"] | None
)

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _map_without_duplicates(pairs: Sequence[tuple[object, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise ValueError(f"map key must be a string, not {type(key).__name__}")
        if key in result:
            raise ValueError(f"duplicate map key {show(key)}")
        result[key] = value
    return result


def _check_depth(obj: object, max_depth: int) -> None:
    """Iterative walk (no recursion limit to hit): containers nest at most ``max_depth``."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, tuple | list):
            children: Sequence[object] = item
        elif isinstance(item, dict):
            children = list(item.values())
        else:
            continue
        if depth > max_depth:
            raise RemoteProtocolError(f"nesting deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def decode_body(body: bytes, limits: Limits) -> object:
    """Decode one frame body. Only ``RemoteProtocolError`` escapes."""
    try:
        obj = msgpack.unpackb(
            body,
            raw=False,
            use_list=False,
            strict_map_key=True,
            object_pairs_hook=_map_without_duplicates,
            ext_hook=_reject_ext,
            max_ext_len=0,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
        )
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # ValueError covers FormatError, StackError, ExtraData, limit violations,
        # UnicodeDecodeError and the hooks above.
        raise RemoteProtocolError(f"malformed msgpack body: {str(exc)[:200]}") from None
    _check_depth(obj, limits.max_depth)
    return obj


def to_wire_value(value: object, limits: Limits, *, depth: int = 1) -> object:
    """Check that a value we are about to send is representable and within our own limits.

    Tuples become lists (msgpack's strict packer accepts only exact types). Raises
    ``LocalProtocolError``: sending something the peer would reject is our bug.
    """
    if value is None or type(value) is bool or type(value) is float:
        return value
    if type(value) is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise LocalProtocolError(f"integer {value} does not fit msgpack")
        return value
    if type(value) is str:
        if len(value.encode("utf-8", "surrogatepass")) > limits.max_str_len:
            raise LocalProtocolError("string longer than max_str_len")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError("string is not valid UTF-8 (lone surrogate)") from None
        return value
    if type(value) is bytes:
        if len(value) > limits.max_bin_len:
            raise LocalProtocolError("bytes longer than max_bin_len")
        return value
    if depth > limits.max_depth:
        raise LocalProtocolError(f"nesting deeper than {limits.max_depth} levels")
    if type(value) is list or type(value) is tuple:
        if len(value) > limits.max_array_len:
            raise LocalProtocolError("array longer than max_array_len")
        return [to_wire_value(item, limits, depth=depth + 1) for item in value]
    if isinstance(value, Mapping):
        if len(value) > limits.max_map_len:
            raise LocalProtocolError("map larger than max_map_len")
        out: dict[str, object] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise LocalProtocolError(f"map key must be a string, not {type(key).__name__}")
            out[to_wire_value(key, limits, depth=depth)] = to_wire_value(  # type: ignore[index]
                item, limits, depth=depth + 1
            )
        return out
    raise LocalProtocolError(f"cannot send a value of type {type(value).__name__}")


def encode_body(obj: Mapping[str, object]) -> bytes:
    """Pack an already-checked wire object (see ``to_wire_value``)."""
    packed: bytes = msgpack.packb(obj, use_bin_type=True, strict_types=True)
    return packed
