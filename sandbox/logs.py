"""Bounded capture of a stage's stdout/stderr, with terminal control sequences removed.

A stage's output is shown to the user; escape sequences in it could rewrite the terminal,
retitle it or (on some terminals) inject input (CVE-2023-28101 in Flatpak).
"""

from __future__ import annotations

import re

# CSI, OSC (to BEL or ST), DCS/SOS/PM/APC strings, two-byte escapes, and C0/C1 controls
# other than tab and newline.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def strip_control(text: str) -> str:
    return _CONTROL.sub("", text)


class CappedBuffer:
    """Keeps the first ``cap`` bytes; counts the rest."""

    def __init__(self, cap: int = 64 * 1024) -> None:
        self.cap = cap
        self._data = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self._data)
        if room > 0:
            self._data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._data)

    def text(self) -> str:
        out = strip_control(self._data.decode("utf-8", "replace"))
        if self.truncated:
            out += f"\n[... {self.total - len(self._data)} more bytes dropped]"
        return out
