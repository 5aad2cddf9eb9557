"""The policies as data and their rendering: golden argv, required seccomp rules, no leaks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mochi_pybridge.sandbox.bwrap import Invocation, render_argv
from mochi_pybridge.sandbox.policy import POLICIES, StageKind
from mochi_pybridge.sandbox.runtime import runtime_paths
from mochi_pybridge.sandbox.seccomp import build_filter, stage_rules

STUBGEN_GOLDEN = [
    "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--assert-userns-disabled",
    "--die-with-parent", "--new-session", "--hostname", "sandbox", "--uid", "65534",
    "--gid", "65534", "--clearenv",
    "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8", "--setenv", "PATH",
    "/usr/bin:/bin", "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED",
    "0", "--setenv", "TMPDIR", "/tmp", "--setenv", "TZ", "UTC",
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
    "/lib64", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
    "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
    "--ro-bind-try", "/etc/localtime", "/etc/localtime", "--proc", "/proc", "--dev", "/dev",
    "--size", "268435456", "--perms", "1777", "--tmpfs", "/tmp",
    "--ro-bind-try", "/opt/py", "/opt/py",
    "--ro-bind-fd", "7", "/in/pkg", "--bind-fd", "8", "/out",
    "--seccomp", "5", "--chdir", "/tmp", "--", "/opt/py/bin/python", "-I", "-m", "x",
]  # fmt: skip


def test_render_argv_stubgen_golden() -> None:
    invocation = Invocation(
        argv=("/opt/py/bin/python", "-I", "-m", "x"),
        input_fds={"pkg": 7},
        output_fd=8,
        runtime_paths=("/opt/py",),
        seccomp_fd=5,
    )
    assert render_argv("bwrap", POLICIES[StageKind.STUBGEN], invocation) == STUBGEN_GOLDEN


def test_render_argv_no_stage_shares_the_network() -> None:
    # Fetch and sign reach the outside only through the kernel's egress proxy.
    invocation = Invocation(argv=("true",), seccomp_fd=3)
    for policy in POLICIES.values():
        argv = render_argv("bwrap", policy, invocation)
        assert "--share-net" not in argv
        assert "--unshare-all" in argv and "--clearenv" in argv
        assert "--die-with-parent" in argv and "--new-session" in argv


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_render_argv_rejects_input_names_that_are_not_one_component(name: str) -> None:
    invocation = Invocation(argv=("true",), input_fds={name: 4}, seccomp_fd=3)
    with pytest.raises(ValueError, match="one path component"):
        render_argv("bwrap", POLICIES[StageKind.STUBGEN], invocation)


def test_runtime_paths_never_include_home_or_its_secrets() -> None:
    home = str(Path.home())
    for path in runtime_paths():
        assert path != home and path != "/"
        assert not path.startswith(os.path.join(home, ".ssh"))
        assert os.path.isdir(path)


REQUIRED_DENIALS = {
    "unshare": errno.EPERM, "mount": errno.EPERM, "setns": errno.EPERM,
    "clone3": errno.ENOSYS, "fsopen": errno.ENOSYS, "open_tree": errno.ENOSYS,
    "move_mount": errno.ENOSYS, "ptrace": errno.EPERM, "keyctl": errno.EPERM,
    "add_key": errno.EPERM, "bpf": errno.EPERM, "io_uring_setup": errno.EPERM,
    "userfaultfd": errno.EPERM, "personality": errno.EPERM, "ioctl": errno.EPERM,
    "chmod": errno.EPERM, "fchmodat": errno.EPERM, "fchmodat2": errno.EPERM,
    "socket": errno.EAFNOSUPPORT, "clone": errno.EPERM,
}  # fmt: skip


@pytest.mark.parametrize("kind", list(StageKind))
def test_stage_rules_cover_the_required_denials(kind: StageKind) -> None:
    rules = stage_rules(POLICIES[kind])
    for syscall, err in REQUIRED_DENIALS.items():
        assert any(r.syscall == syscall and r.errno == err for r in rules), syscall


def test_stage_rules_socket_families_follow_the_policy() -> None:
    def denied_families(kind: StageKind) -> set[int]:
        return {
            r.args[0].value
            for r in stage_rules(POLICIES[kind])
            if r.syscall == "socket" and r.args[0].op == "eq"
        }

    # Fetch: AF_UNIX for the proxy socket, AF_INET for the loopback relay; nothing else.
    assert {1, 2} - denied_families(StageKind.FETCH) == {1, 2}
    assert {10, 16, 17} <= denied_families(StageKind.FETCH)
    assert {2, 10, 16, 17} <= denied_families(StageKind.STUBGEN)
    assert 1 not in denied_families(StageKind.STUBGEN)


@pytest.mark.parametrize("kind", list(StageKind))
def test_build_filter_exports_bpf(kind: StageKind, tmp_path: Path) -> None:
    out = tmp_path / "filter.bpf"
    with out.open("wb") as f:
        build_filter(POLICIES[kind]).export_bpf(f)  # type: ignore[attr-defined]
    size = out.stat().st_size
    assert size > 0 and size % 8 == 0  # struct sock_filter is 8 bytes


def test_the_late_no_exec_filter_stops_programs_but_not_python(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = f"""
import os, subprocess
from mochi_pybridge.sandbox.seccomp import deny_exec
deny_exec()
try:
    subprocess.run(["/bin/sh", "-c", "touch {marker}"], check=False)
except PermissionError:
    print("refused")
pid = os.fork()
if pid == 0:
    try:
        os.execv("/bin/sh", ["/bin/sh", "-c", "touch {marker}"])
    finally:
        os._exit(7)
print("child", os.waitpid(pid, 0)[1] >> 8)
print(sum(range(10)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "child", "7", "45"]
    assert not marker.exists()
