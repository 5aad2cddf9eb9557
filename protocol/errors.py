"""The protocol's error tree: one root, split by who broke the rules.

``LocalProtocolError`` means *we* tried something the protocol forbids (a bug in our code);
``RemoteProtocolError`` means the *peer* did (a hostile or broken runner or client). Every
problem with received bytes surfaces as ``RemoteProtocolError`` and leaves the connection dead.
"""

from __future__ import annotations


def show(value: object, limit: int = 80) -> str:
    """``repr`` of a peer-supplied value, cut short: error texts must stay small and sendable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ProtocolError(Exception):
    """Abstract root: never raised as itself.

    ``code`` is the error code (see PROTOCOL.md) that the I/O layer sends to the peer in a
    last, connection-level ``error`` frame before it closes.
    """

    code: str

    def __init__(self, message: str, *, code: str = "protocol-error") -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise Local- or RemoteProtocolError")
        super().__init__(message)
        self.code = code

    def diagnostics(self) -> str:
        """A one-paragraph explanation fit for a user."""
        return f"{self.args[0]} (code {self.code})"


class LocalProtocolError(ProtocolError):
    """We attempted to send something the protocol or the connection state forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, oversized, out of order or otherwise forbidden."""

    def diagnostics(self) -> str:
        return f"the peer broke the protocol: {self.args[0]} (code {self.code})"
