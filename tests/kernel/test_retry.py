"""Network stages retry transient failures with backoff and jitter; nothing else retries."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mochi_pybridge.kernel.errors import StageFailed
from mochi_pybridge.kernel.retry import with_retries


async def test_with_retries_retries_transient_failures_then_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = []
    delays = []

    async def flaky() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise StageFailed("connection reset", code="transient")
        return "ok"

    assert await with_retries(flaky, on_retry=lambda n, e, d: delays.append(d)) == "ok"
    assert len(calls) == 3
    assert all(0 <= d <= 0.5 * 2**i for i, d in enumerate(delays))  # full jitter, exponential cap


async def test_with_retries_gives_up_after_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise StageFailed("503", code="transient")

    with pytest.raises(StageFailed, match="503"):
        await with_retries(down, attempts=4)
    assert calls == 4


async def test_with_retries_never_retries_other_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def integrity() -> None:
        nonlocal calls
        calls += 1
        raise StageFailed("hash mismatch", code="integrity")

    with pytest.raises(StageFailed, match="hash mismatch"):
        await with_retries(integrity)
    assert calls == 1
