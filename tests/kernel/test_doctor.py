"""`mochi-pybridge doctor` on this machine, and on machines where the sandbox cannot run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

CLI = [sys.executable, "-m", "mochi_pybridge"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, wrap: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(wrap or []), *CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_doctor_passes_here_and_reports_every_stage() -> None:
    done = run_cli("--json", "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert {s["stage"] for s in report["stages"]} == {
        "fetch",
        "stubgen",
        "synthesis",
        "compile",
        "sign",
    }
    for stage in report["stages"]:
        assert stage["violations"] == {}
        assert stage["outcomes"]["read-secret"] == "blocked:ENOENT"
        assert stage["outcomes"]["i386-syscall"] == "killed:SIGSYS"
        assert stage["outcomes"]["clone3"] == "blocked:ENOSYS"


def test_doctor_human_output_names_each_check() -> None:
    done = run_cli("doctor")
    assert done.returncode == 0
    for word in ("bubblewrap", "user namespaces", "seccomp", "cgroups", "sandbox: OK"):
        assert word in done.stdout


def test_doctor_without_bwrap_exits_4_and_says_how_to_fix() -> None:
    done = run_cli("doctor", env={"MOCHI_PYBRIDGE_BWRAP": "/nonexistent/bwrap"})
    assert done.returncode == 4
    assert "apt-get install bubblewrap" in done.stderr
    assert "Traceback" not in done.stderr


def test_doctor_without_user_namespaces_exits_4_and_says_how_to_fix() -> None:
    """Run doctor where creating user namespaces is really impossible: inside a sandbox that
    disabled them (the same kernel check AppArmor or a zero max_user_namespaces trips)."""
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    wrap = [
        bwrap,
        "--unshare-user",
        "--disable-userns",
        "--dev-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--",
    ]
    done = run_cli("doctor", wrap=wrap)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "user namespaces are blocked" in done.stderr
    assert "apparmor" in done.stderr.lower()
