"""The stage graph: validation, ordering, bounded parallelism, failure policy (autojump clock)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import trio
import trio.testing

from mochi_pybridge.kernel.graph import (
    GraphError,
    Outcome,
    StageSpec,
    Status,
    balanced_batches,
    run_graph,
    validate,
)


def chain(package: str) -> list[StageSpec]:
    kinds = ["fetch", "unpack", "stubs", "synthesis", "compile"]
    specs = []
    for i, kind in enumerate(kinds):
        after = (f"{kinds[i - 1]}:{package}",) if i else ()
        specs.append(StageSpec(f"{kind}:{package}", kind, package, after))
    return specs


def test_validate_rejects_cycles_unknown_deps_and_duplicates() -> None:
    with pytest.raises(GraphError, match="cycle"):
        validate([StageSpec("a", "k", "p", ("b",)), StageSpec("b", "k", "p", ("a",))])
    with pytest.raises(GraphError, match="unknown stage"):
        validate([StageSpec("a", "k", "p", ("ghost",))])
    with pytest.raises(GraphError, match="share the key"):
        validate([StageSpec("a", "k", "p"), StageSpec("a", "k", "q")])


async def test_run_graph_respects_dependencies(autojump_clock: trio.testing.MockClock) -> None:
    order: list[str] = []

    async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> str:
        assert all(o.status is Status.OK for o in deps.values())
        await trio.sleep(1)
        order.append(spec.key)
        return spec.key

    run = await run_graph(chain("a") + chain("b"), execute, jobs=2)
    assert all(o.status is Status.OK for o in run.outcomes.values())
    for package in "ab":
        keys = [k for k in order if k.endswith(package)]
        assert keys == [s.key for s in chain(package)]


@pytest.mark.parametrize("jobs", [1, 2, 3])
async def test_run_graph_bounds_parallelism(
    jobs: int, autojump_clock: trio.testing.MockClock
) -> None:
    running = peak = 0

    async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1

    stages = [StageSpec(f"s{i}", "fetch", f"p{i}") for i in range(8)]
    start = trio.current_time()
    await run_graph(stages, execute, jobs=jobs)
    assert peak == jobs
    assert trio.current_time() - start == pytest.approx(-(-8 // jobs))


async def test_run_graph_failure_skips_dependents_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> None:
        await trio.sleep(1)
        if spec.key == "stubs:a":
            raise RuntimeError("stubgen exploded")

    run = await run_graph(chain("a") + chain("b"), execute, jobs=2)
    assert run.outcomes["stubs:a"].status is Status.FAILED
    assert isinstance(run.outcomes["stubs:a"].error, RuntimeError)
    assert run.outcomes["synthesis:a"].status is Status.SKIPPED
    assert run.outcomes["compile:a"].status is Status.SKIPPED
    assert all(run.outcomes[s.key].status is Status.OK for s in chain("b"))
    assert run.failed == ["stubs:a"]


async def test_run_graph_fail_fast_cancels_the_rest(autojump_clock: trio.testing.MockClock) -> None:
    async def execute(spec: StageSpec, deps: Mapping[str, Outcome]) -> None:
        if spec.package == "a":
            raise RuntimeError("boom")
        await trio.sleep(100)

    run = await run_graph(chain("a") + chain("b"), execute, jobs=2, fail_fast=True)
    assert run.outcomes["fetch:a"].status is Status.FAILED
    assert run.outcomes["fetch:b"].status is Status.CANCELLED


def test_balanced_batches_spread_heavy_items_and_keep_order() -> None:
    sizes = [100, 1, 1, 90, 1, 1, 80, 1]
    batches = balanced_batches(list(range(len(sizes))), 2, lambda i: sizes[i])
    loads = [sum(sizes[i] for i in batch) for batch in batches]
    assert sorted(i for batch in batches for i in batch) == list(range(len(sizes)))
    assert max(loads) - min(loads) <= 80  # round-robin would give 272 vs 3
    assert all(batch == sorted(batch) for batch in batches)
    assert balanced_batches([1, 2, 3, 4, 5], 2, None) == [[1, 3, 5], [2, 4]]
