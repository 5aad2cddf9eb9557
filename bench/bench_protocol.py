"""Protocol throughput (encode + decode in one process) and request/result round trip over a
socket pair between two processes.

    .venv/bin/python bench/bench_protocol.py
"""

from __future__ import annotations

import os
import socket
import time

from table import print_table, summary, write_json

from mochi_pybridge.protocol import (
    NEED_DATA,
    Connection,
    Progress,
    Request,
    Result,
    Role,
)


def connected() -> tuple[Connection, Connection]:
    kernel = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="bench")
    runner = Connection(role=Role.RUNNER, peer_role=Role.KERNEL, software="bench")
    runner.receive_data(kernel.hello())
    kernel.receive_data(runner.hello())
    kernel.next_event(), runner.next_event()
    return kernel, runner


def throughput(payload: dict[str, object], count: int) -> tuple[float, float]:
    """(messages/s, MB/s) for encode on one side plus decode on the other."""
    kernel, runner = connected()
    runner.receive_data(kernel.send(Request(id=1, method="bench")))
    runner.next_event()
    start = time.perf_counter()
    total = 0
    for i in range(count):
        data = runner.send(Progress(id=1, message=f"step {i}", done=i, total=count))
        total += len(data)
        kernel.receive_data(data)
        kernel.next_event()
    data = runner.send(Result(id=1, value=payload))
    kernel.receive_data(data)
    kernel.next_event()
    elapsed = time.perf_counter() - start
    return count / elapsed, total / elapsed / 1e6


def big_throughput(payload: dict[str, object], count: int) -> tuple[float, float]:
    kernel, runner = connected()
    start = time.perf_counter()
    total = 0
    for i in range(1, count + 1):
        data = kernel.send(Request(id=i, method="bench", params=payload))
        total += len(data)
        runner.receive_data(data)
        runner.next_event()
        kernel.receive_data(runner.send(Result(id=i)))
        kernel.next_event()
    elapsed = time.perf_counter() - start
    return count / elapsed, total / elapsed / 1e6


def echo_child(fd: int) -> None:
    runner = Connection(role=Role.RUNNER, peer_role=Role.KERNEL, software="bench")
    os.write(fd, runner.hello())
    while True:
        data = os.read(fd, 65536)
        if not data:
            return
        runner.receive_data(data)
        while (event := runner.next_event()) is not NEED_DATA:
            if isinstance(event, Request):
                os.write(fd, runner.send(Result(id=event.id, value=event.params)))


def roundtrips(count: int) -> list[float]:
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        echo_child(child.fileno())
        os._exit(0)
    child.close()
    kernel = Connection(role=Role.KERNEL, peer_role=Role.RUNNER, software="bench")
    parent.sendall(kernel.hello())

    def receive() -> object:
        while (event := kernel.next_event()) is NEED_DATA:
            kernel.receive_data(parent.recv(65536))
        return event

    receive()
    samples = []
    for i in range(1, count + 1):
        start = time.perf_counter()
        parent.sendall(kernel.send(Request(id=i, method="echo", params={"n": i})))
        receive()
        samples.append(time.perf_counter() - start)
    parent.close()
    os.waitpid(pid, 0)
    return samples


def main() -> None:
    small: dict[str, object] = {"files": ["a.pyi", "b.pyi"], "ok": True}
    big: dict[str, object] = {"blob": b"x" * 1_000_000}
    rows = []
    results: dict[str, object] = {}
    for name, fn, payload, count in (
        ("progress frames (small)", throughput, small, 100_000),
        ("request+result, 1 MB bin param", big_throughput, big, 200),
    ):
        runs = [fn(payload, count) for _ in range(5)]
        msgs = summary([r[0] for r in runs])
        mbs = summary([r[1] for r in runs])
        rows.append(
            [
                name,
                f"{msgs['median']:,.0f}",
                f"{msgs['min']:,.0f}-{msgs['max']:,.0f}",
                f"{mbs['median']:.1f}",
                f"{mbs['min']:.1f}-{mbs['max']:.1f}",
            ]
        )
        results[name] = {"messages_per_s": msgs, "mb_per_s": mbs}
    print_table(
        "protocol encode+decode throughput (median of 5 runs)",
        ["workload", "msg/s", "range", "MB/s", "range"],
        rows,
    )
    rtt = roundtrips(5000)[100:]
    s = summary(rtt)
    p99 = sorted(rtt)[int(len(rtt) * 0.99)]
    print_table(
        "request/result round trip over a socketpair between two processes",
        ["samples", "median µs", "min µs", "p99 µs", "max µs"],
        [
            [
                len(rtt),
                f"{s['median'] * 1e6:.1f}",
                f"{s['min'] * 1e6:.1f}",
                f"{p99 * 1e6:.1f}",
                f"{s['max'] * 1e6:.1f}",
            ]
        ],
    )
    results["roundtrip_s"] = {**s, "p99": p99}
    write_json("protocol", results)


if __name__ == "__main__":
    main()
