"""Errors the user sees, each with its exit code (SPEC §2)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    LOCK_DRIFT = 3
    SANDBOX_UNAVAILABLE = 4
    CAPABILITY_ELEVATION = 5
    INTEGRITY = 6


class PybridgeError(Exception):
    """Root of user-facing failures: one clear paragraph, no traceback unless ``-v``."""

    exit_code: ExitCode = ExitCode.FAILURE

    def diagnostics(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class SandboxUnavailable(PybridgeError):
    exit_code = ExitCode.SANDBOX_UNAVAILABLE


class IntegrityError(PybridgeError):
    exit_code = ExitCode.INTEGRITY


class StageFailed(PybridgeError):
    """A stage (one runner doing one job for one package) failed.

    ``code`` is the protocol error code the runner answered with (``integrity`` maps to exit
    6, ``sandbox`` to exit 4), or ``failed`` when the runner itself misbehaved.
    """

    def __init__(
        self, message: str, *, code: str = "failed", details: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or {}
        if code == "integrity":
            self.exit_code = ExitCode.INTEGRITY
        elif code == "sandbox":
            self.exit_code = ExitCode.SANDBOX_UNAVAILABLE
