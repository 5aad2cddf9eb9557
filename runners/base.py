"""The shape every runner shares: hello, one request, progress, one answer, goodbye, exit.

A runner serves exactly one request per process (no pool, no reuse): the kernel starts a
fresh sandbox per stage. Handlers raise ``RunnerFailure`` for expected failures (with a
protocol error code); anything else is reported as ``internal``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.channel import ChannelClosed, RunnerChannel

Handler = Callable[[Request, RunnerChannel], Mapping[str, Any]]


class RunnerFailure(Exception):
    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})


def serve_one(handlers: Mapping[str, Handler], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol-fd", type=int, required=True)
    args = parser.parse_args(argv)
    channel = RunnerChannel(args.protocol_fd, frozenset(handlers))
    try:
        channel.open()
        request = channel.next_request()
    except ChannelClosed:
        return 0
    try:
        value = handlers[request.method](request, channel)
    except RunnerFailure as exc:
        channel.error(request.id, exc.code, exc.message, exc.details)
    except Exception as exc:  # a bug in the runner: report it, do not hang the kernel
        traceback.print_exc(file=sys.stderr)
        channel.error(request.id, "internal", f"{type(exc).__name__}: {exc}"[:2000])
    else:
        channel.result(request.id, value)
    channel.goodbye("done")
    return 0
