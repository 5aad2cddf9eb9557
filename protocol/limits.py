"""Hard limits on what a peer may send. Every limit is checked before memory grows with it."""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1

# A frame is a 4-byte big-endian unsigned length followed by one msgpack object.
FRAME_HEADER_SIZE = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Limits for one connection; both directions are held to the same numbers.

    Large artefacts (wheels, stub trees, compiled wrappers) never travel inline: they are files
    in a stage's output directory and go through the kernel's intake. Frames carry metadata.
    """

    max_frame_size: int = 4 * 1024 * 1024
    max_depth: int = 32
    max_str_len: int = 1024 * 1024
    max_bin_len: int = 4 * 1024 * 1024
    max_array_len: int = 65_536
    max_map_len: int = 4_096
    max_pending_requests: int = 64

    def __post_init__(self) -> None:
        for name in (
            "max_frame_size",
            "max_depth",
            "max_str_len",
            "max_bin_len",
            "max_array_len",
            "max_map_len",
            "max_pending_requests",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if self.max_frame_size >= 2**32:
            raise ValueError("max_frame_size must fit the 4-byte length prefix")


DEFAULT_LIMITS = Limits()
