"""Can the sandbox run here? Fail closed with an actionable message when it cannot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache

from mochi_pybridge.kernel.errors import SandboxUnavailable

# Tests and unusual installs may name the binary; nothing falls back to running unsandboxed.
BWRAP_ENV = "MOCHI_PYBRIDGE_BWRAP"

HOW_TO_INSTALL = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: "
    "`sudo dnf install bubblewrap`)"
)
HOW_TO_ENABLE_USERNS = (
    "user namespaces are blocked on this machine. On Ubuntu 24.04+ AppArmor restricts them: "
    "install an AppArmor profile for bwrap (see the bubblewrap package's documentation) or "
    "set `sysctl kernel.apparmor_restrict_unprivileged_userns=0`; elsewhere check "
    "`sysctl user.max_user_namespaces` (must be > 0) and "
    "`kernel.unprivileged_userns_clone` (must be 1)"
)


def find_bwrap() -> str:
    explicit = os.environ.get(BWRAP_ENV)
    path = explicit if explicit else shutil.which("bwrap")
    if not path or not os.access(path, os.X_OK):
        where = f" at {explicit}" if explicit else " on PATH"
        raise SandboxUnavailable(
            f"bubblewrap (bwrap) was not found{where}, so untrusted stages cannot be "
            f"sandboxed. To fix: {HOW_TO_INSTALL}. To run without the sandbox anyway, pass "
            "--unsafe-no-sandbox (not recommended; recorded in mochi.lock)."
        )
    return path


@cache
def bwrap_version(bwrap: str) -> tuple[int, ...]:
    out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out.stdout)
    return tuple(int(x) for x in match.groups()) if match else ()


def check_user_namespaces(bwrap: str) -> None:
    """Start the smallest possible sandbox; translate a failure into a clear error."""
    proc = subprocess.run(
        [
            bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--",
            "/usr/bin/true",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise SandboxUnavailable(
            f"bubblewrap cannot create its namespaces here ({detail[0]}). To fix: "
            f"{HOW_TO_ENABLE_USERNS}. To run without the sandbox anyway, pass "
            "--unsafe-no-sandbox (not recommended; recorded in mochi.lock)."
        )


def check_seccomp() -> None:
    try:
        import pyseccomp

        pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except (ImportError, OSError, RuntimeError) as exc:
        raise SandboxUnavailable(
            f"seccomp is not usable ({exc}). To fix: install libseccomp "
            "(Debian/Ubuntu: `sudo apt-get install libseccomp2`)."
        ) from None
    with open("/proc/self/status") as status:
        if not any(line.startswith("Seccomp:") for line in status):
            raise SandboxUnavailable("this kernel has no seccomp support (CONFIG_SECCOMP)")


def ensure_available() -> str:
    """Everything a sandboxed stage needs, or SandboxUnavailable (exit 4). Returns bwrap."""
    bwrap = find_bwrap()
    check_user_namespaces(bwrap)
    check_seccomp()
    return bwrap
