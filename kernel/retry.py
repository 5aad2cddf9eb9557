"""Retries for network stages only: transient failures (connection errors, 5xx, 429) are
retried with exponential backoff and full jitter, a bounded number of times. Nothing else
retries silently."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from mochi_pybridge.kernel.errors import StageFailed

T = TypeVar("T")


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    on_retry: Callable[[int, StageFailed, float], None] | None = None,
) -> T:
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except StageFailed as exc:
            if exc.code != "transient" or number == attempts:
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (number - 1)))  # noqa: S311
            if on_retry is not None:
                on_retry(number, exc, delay)
            await trio.sleep(delay)
    raise AssertionError("unreachable")
