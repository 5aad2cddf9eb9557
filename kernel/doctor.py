"""``mochi-pybridge doctor``: can the sandbox be used here, and does every stage's policy hold?

It reports bubblewrap's version and features, user namespaces, seccomp, cgroup delegation and
the effective limits, then runs the escape probe inside each stage's policy against canaries it
sets up itself (a secret file outside the sandbox, a TCP listener and an abstract Unix socket
on the host) and reports the outcome of every attempt.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio

from mochi_pybridge.kernel.errors import ExitCode, SandboxUnavailable
from mochi_pybridge.sandbox import availability, cgroups, probe
from mochi_pybridge.sandbox.launch import run
from mochi_pybridge.sandbox.policy import POLICIES
from mochi_pybridge.sandbox.runtime import python_argv


@dataclass
class StageReport:
    stage: str
    network: bool
    limits: dict[str, float]
    outcomes: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass
class DoctorReport:
    ok: bool = False
    bwrap: str = ""
    bwrap_version: str = ""
    user_namespaces: str = ""
    seccomp: str = ""
    cgroups: str = ""
    problem: str = ""
    stages: list[StageReport] = field(default_factory=list)


async def _probe_all(report: DoctorReport) -> None:
    with tempfile.TemporaryDirectory(prefix="mochi-doctor-") as tmp:
        secret = Path(tmp) / "id_rsa"
        secret.write_text("CANARY-SECRET\n")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with listener, abstract:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            abstract_name = f"mochi-doctor-{uuid.uuid4().hex}"
            abstract.bind("\0" + abstract_name)
            abstract.listen()
            port = listener.getsockname()[1]
            for kind, policy in POLICIES.items():
                stage = StageReport(
                    stage=kind.value,
                    network=policy.network,
                    limits={k: float(v) for k, v in asdict(policy.limits).items()},
                )
                argv = python_argv(
                    "mochi_pybridge.sandbox.probe",
                    "--secret", str(secret),
                    "--tcp", f"127.0.0.1:{port}",
                    "--abstract", abstract_name,
                )  # fmt: skip
                done = await run(policy, argv, wall_clock=60)
                try:
                    stage.outcomes = json.loads(done.stdout)
                except ValueError:
                    stage.error = f"probe failed (exit {done.returncode}): {done.stderr[-500:]}"
                else:
                    stage.violations = probe.violations(stage.outcomes, network=policy.network)
                # A refused connect inside a private netns hit the sandbox's own loopback;
                # only the host listener can tell whether it was really reached.
                if _drain_connections(listener) and not policy.network:
                    stage.violations["tcp-connect"] = "reached the host's loopback listener"
                report.stages.append(stage)


def _drain_connections(listener: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def diagnose() -> DoctorReport:
    report = DoctorReport()
    support = cgroups.detect()
    report.cgroups = support.kind if support.parent else f"none: {support.reason}"
    try:
        report.bwrap = availability.find_bwrap()
        version = availability.bwrap_version(report.bwrap)
        report.bwrap_version = ".".join(map(str, version)) or "unknown"
        availability.check_user_namespaces(report.bwrap)
        report.user_namespaces = "ok"
        availability.check_seccomp()
        report.seccomp = "ok"
    except SandboxUnavailable as exc:
        report.problem = exc.diagnostics()
        return report
    trio.run(_probe_all, report)
    report.ok = all(not s.violations and not s.error for s in report.stages)
    if not report.ok:
        report.problem = "a stage's policy does not hold on this machine (see above)"
    return report


def render(report: DoctorReport) -> str:
    lines = [
        f"bubblewrap      {report.bwrap or 'missing'} {report.bwrap_version}",
        f"user namespaces {report.user_namespaces or 'unusable'}",
        f"seccomp         {report.seccomp or 'unknown'}",
        f"cgroups         {report.cgroups}",
    ]
    for stage in report.stages:
        verdict = "holds" if not stage.violations and not stage.error else "BROKEN"
        lim = stage.limits
        lines.append(
            f"\nstage {stage.stage}: policy {verdict}; network {'yes' if stage.network else 'no'};"
            f" limits: as {int(lim['address_space']) >> 20} MiB, cpu {int(lim['cpu_seconds'])} s,"
            f" fsize {int(lim['file_size']) >> 20} MiB, nofile {int(lim['open_files'])},"
            f" pids {int(lim['processes'])}, wall {lim['wall_clock_seconds']:.0f} s"
        )
        if stage.error:
            lines.append(f"  error: {stage.error}")
        for operation, outcome in sorted(stage.outcomes.items()):
            mark = "FAIL" if operation in stage.violations else "ok"
            lines.append(f"  {mark:4}  {operation:18} {outcome}")
    lines.append("")
    lines.append("sandbox: OK" if report.ok else f"sandbox: NOT USABLE — {report.problem}")
    return "\n".join(lines)


def run_doctor(as_json: bool) -> int:
    report = diagnose()
    if as_json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True))
    else:
        print(render(report))
    if not report.ok:
        print(f"error: {report.problem}", file=sys.stderr)
        return int(ExitCode.SANDBOX_UNAVAILABLE)
    return int(ExitCode.OK)
