"""The work as a graph of stages, run with bounded parallelism (pytest-trio's scheduling).

The graph is plain data and is validated up front (unknown dependencies, cycles). Running it
starts one task per stage; a stage waits for its dependencies' ``done`` events, takes a slot of
the ``CapacityLimiter`` (``--jobs``), runs, and records an outcome. Failures are outcomes, not
exceptions that tear the nursery down: the stages that depend on a failed one are skipped, the
others go on - unless ``fail_fast``, which cancels everything still running.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from mochi_pybridge.kernel.errors import PybridgeError


class GraphError(PybridgeError):
    """The stage graph is malformed (a bug in the planner, not in the user's project)."""


@dataclass(frozen=True, slots=True)
class StageSpec:
    key: str  # unique, e.g. "fetch:attrs"
    kind: str
    package: str
    after: tuple[str, ...] = ()  # keys of the stages this one needs


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # a dependency failed
    CANCELLED = "cancelled"


@dataclass
class Outcome:
    status: Status
    value: Any = None
    error: BaseException | None = None


@dataclass
class GraphRun:
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [k for k, o in self.outcomes.items() if o.status is Status.FAILED]


def validate(stages: Sequence[StageSpec]) -> Mapping[str, StageSpec]:
    by_key: dict[str, StageSpec] = {}
    for spec in stages:
        if spec.key in by_key:
            raise GraphError(f"two stages share the key {spec.key!r}")
        by_key[spec.key] = spec
    for spec in stages:
        for dep in spec.after:
            if dep not in by_key:
                raise GraphError(f"stage {spec.key!r} needs unknown stage {dep!r}")
    # Kahn's algorithm: anything left over sits on a cycle.
    indegree = {k: len(s.after) for k, s in by_key.items()}
    dependents: dict[str, list[str]] = {k: [] for k in by_key}
    for spec in stages:
        for dep in spec.after:
            dependents[dep].append(spec.key)
    ready = [k for k, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        key = ready.pop()
        seen += 1
        for child in dependents[key]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if seen != len(by_key):
        cyclic = sorted(k for k, d in indegree.items() if d > 0)
        raise GraphError(f"stage graph has a cycle through {', '.join(cyclic)}")
    return by_key


Execute = Callable[[StageSpec, Mapping[str, Outcome]], Awaitable[Any]]


async def run_graph(
    stages: Sequence[StageSpec],
    execute: Execute,
    *,
    jobs: int,
    fail_fast: bool = False,
) -> GraphRun:
    """Run every stage; ``execute(spec, dependency outcomes)`` does one stage's work."""
    by_key = validate(stages)
    limiter = trio.CapacityLimiter(max(1, jobs))
    done = {key: trio.Event() for key in by_key}
    result = GraphRun()

    async def one(spec: StageSpec, cancel_all: trio.CancelScope) -> None:
        try:
            for dep in spec.after:
                await done[dep].wait()
            deps = {d: result.outcomes[d] for d in spec.after}
            if any(o.status is not Status.OK for o in deps.values()):
                result.outcomes[spec.key] = Outcome(Status.SKIPPED)
                return
            async with limiter:
                try:
                    value = await execute(spec, deps)
                except trio.Cancelled:
                    result.outcomes[spec.key] = Outcome(Status.CANCELLED)
                    raise
                except Exception as exc:
                    result.outcomes[spec.key] = Outcome(Status.FAILED, error=exc)
                    if fail_fast:
                        cancel_all.cancel()
                else:
                    result.outcomes[spec.key] = Outcome(Status.OK, value=value)
        finally:
            result.outcomes.setdefault(spec.key, Outcome(Status.CANCELLED))
            done[spec.key].set()

    async with trio.open_nursery() as nursery:
        for spec in stages:
            nursery.start_soon(one, spec, nursery.cancel_scope)
    return result


T = TypeVar("T")


def balanced_batches(
    items: Sequence[T], count: int, weight: Callable[[T], float] | None
) -> list[list[T]]:
    """``count`` batches; round-robin without weights, else longest-processing-time first.
    Each batch keeps its items in their original order."""
    if weight is None:
        return [list(items[i::count]) for i in range(count)]
    loads = [0.0] * count
    chosen: list[list[int]] = [[] for _ in range(count)]
    for index in sorted(range(len(items)), key=lambda i: -weight(items[i])):
        lightest = loads.index(min(loads))
        loads[lightest] += weight(items[index])
        chosen[lightest].append(index)
    return [[items[i] for i in sorted(batch)] for batch in chosen]


async def run_in_batches(
    items: Sequence[T],
    jobs: int,
    work: Callable[[list[T]], Awaitable[None]],
    *,
    weight: Callable[[T], float] | None = None,
) -> None:
    """Split ``items`` into at most ``jobs`` batches and run ``work`` on each concurrently:
    one sandbox start per batch instead of one per item. Fewer than two items: nothing to
    gain, so nothing is done (the caller's per-item path handles them).

    With ``weight`` (e.g. bytes to unpack), batches are balanced by it: heaviest first, each
    to the lightest batch so far, so one batch does not hold all the big items."""
    if len(items) < 2:
        return
    batches = balanced_batches(items, max(1, jobs), weight)
    async with trio.open_nursery() as nursery:
        for batch in batches:
            if batch:
                nursery.start_soon(work, batch)
