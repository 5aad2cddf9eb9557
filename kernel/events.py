"""Stage events and where they go: a live display on a terminal, NDJSON with ``--json``,
plain log lines otherwise. Every start, progress, finish, skip and failure is an event."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from mochi_pybridge.sandbox.logs import strip_control

if TYPE_CHECKING:  # rich costs ~0.1 s to import: only a terminal display pays for it
    from rich.table import Table


@dataclass(frozen=True, slots=True)
class StageEvent:
    kind: str  # "start" | "progress" | "log" | "finish" | "skip" | "fail" | "cached"
    stage: str  # e.g. "fetch"
    package: str
    message: str = ""
    done: int = 0
    total: int | None = None
    elapsed: float = 0.0
    time: float = field(default_factory=time.time)


class EventSink(Protocol):
    def emit(self, event: StageEvent) -> None: ...

    def close(self) -> None: ...


class JsonSink:
    """Newline-delimited JSON, one object per event, on stdout."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout

    def emit(self, event: StageEvent) -> None:
        record = asdict(event)
        record["message"] = strip_control(event.message)
        self.out.write(json.dumps(record, sort_keys=True) + "\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class PlainSink:
    """One line per event that matters (no progress chatter), for logs and pipes."""

    def __init__(self, out: IO[str] | None = None, *, verbose: bool = False) -> None:
        self.out = out or sys.stderr
        self.verbose = verbose

    def emit(self, event: StageEvent) -> None:
        if event.kind in ("progress", "log", "cached") and not self.verbose:
            return
        text = strip_control(event.message)
        suffix = f" ({event.elapsed:.1f}s)" if event.kind in ("finish", "fail") else ""
        self.out.write(f"{event.kind:8} {event.stage:9} {event.package} {text}{suffix}\n")
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


class RichSink:
    """A live display: one line per running stage, overall counts, elapsed time."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(stderr=True)
        self._running: dict[tuple[str, str], str] = {}
        self._counts = {"finish": 0, "fail": 0, "skip": 0, "cached": 0}
        self._start = time.monotonic()
        self._live = Live(self._render(), console=self._console, refresh_per_second=8)
        self._live.start()

    def _render(self) -> Table:
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for (stage, package), message in sorted(self._running.items()):
            table.add_row("[cyan]…[/]", stage, package, strip_control(message)[:60])
        c = self._counts
        table.add_row(
            "",
            f"{time.monotonic() - self._start:5.1f}s",
            f"done {c['finish']}  cached {c['cached']}  failed {c['fail']}  skipped {c['skip']}",
            "",
        )
        return table

    def emit(self, event: StageEvent) -> None:
        key = (event.stage, event.package)
        if event.kind in ("start", "progress"):
            self._running[key] = event.message
        else:
            self._running.pop(key, None)
            if event.kind in self._counts:
                self._counts[event.kind] += 1
            if event.kind == "fail":
                self._console.print(
                    f"[red]failed[/] {event.stage} {event.package}: {event.message}"
                )
        self._live.update(self._render())

    def close(self) -> None:
        self._live.stop()


def make_sink(*, as_json: bool, verbose: bool = False) -> EventSink:
    if as_json:
        return JsonSink()
    if sys.stderr.isatty():
        return RichSink()
    return PlainSink(verbose=verbose)
