"""The escape probe: run *inside* a sandbox, it attempts forbidden operations and prints one
JSON object ``{operation: outcome}``. Outcomes: ``"allowed"``, ``"blocked:ERRNO"`` or
``"killed:SIGNAL"``. ``doctor`` and the tests compare the outcomes with what each stage's
policy promises. Our code, not package code; it only tries, it never escalates.

    python -I -B -m mochi_pybridge.sandbox.probe [--secret PATH] [--tcp HOST:PORT]
        [--abstract NAME] [--unix PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import mmap
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from mochi_pybridge.sandbox.policy import BASE_ENV, POLICIES

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long] + [ctypes.c_ulong] * 5

# x86_64 syscall numbers
SYS = {
    "ioctl": 16, "ptrace": 101, "personality": 135, "keyctl": 250, "unshare": 272,
    "userfaultfd": 323, "bpf": 321, "io_uring_setup": 425, "clone3": 435, "fsopen": 430,
    "mount": 165, "setns": 308,
}  # fmt: skip
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


def _raw(name: str, *args: int) -> str:
    ctypes.set_errno(0)
    padded = [a & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (5 - len(args))
    res = _libc.syscall(SYS[name], *padded)
    if res == -1:
        return "blocked:" + errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "allowed"


def _outcome(fn: Callable[[], object]) -> str:
    try:
        fn()
    except OSError as exc:
        return "blocked:" + errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "allowed"


def _socket(
    family: int, kind: int, proto: int = 0, target: tuple[str, int] | str | None = None
) -> str:
    def attempt() -> None:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(2)
            if target is not None:
                if kind == socket.SOCK_DGRAM:
                    sock.sendto(b"probe", target)
                else:
                    sock.connect(target)

    return _outcome(attempt)


def _i386_syscall() -> str:
    """Run `int 0x80` (getpid in the i386 ABI) in a child; a non-native ABI must be killed."""
    code = bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax,20; int 0x80; ret
    pid = os.fork()
    if pid == 0:
        try:
            buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            buf.write(code)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            ctypes.CFUNCTYPE(ctypes.c_int)(addr)()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed:" + signal.Signals(os.WTERMSIG(status)).name
    return "allowed"


def _setuid_chmod() -> str:
    fd, path = tempfile.mkstemp(prefix=".probe-setuid-")
    os.close(fd)
    try:
        return _outcome(lambda: os.chmod(path, 0o4755))  # noqa: S103 (the attempt is the point)
    finally:
        os.unlink(path)


def run_probe(args: argparse.Namespace) -> dict[str, str]:
    results: dict[str, str] = {}
    if args.secret:
        results["read-secret"] = _outcome(lambda: Path(args.secret).read_bytes())
    leaked = sorted(set(os.environ) - _EXPECTED_ENV)
    results["env-leak"] = ("allowed:" + ",".join(leaked)) if leaked else "blocked:CLEAN"
    if args.tcp:
        host, port = args.tcp.rsplit(":", 1)
        results["tcp-connect"] = _socket(socket.AF_INET, socket.SOCK_STREAM, 0, (host, int(port)))
    results["udp-dns"] = _socket(socket.AF_INET, socket.SOCK_DGRAM, 0, ("192.0.2.1", 53))
    results["netlink"] = _socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    results["packet"] = _socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    results["raw-inet"] = _socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    if args.abstract:
        results["unix-abstract"] = _socket(
            socket.AF_UNIX, socket.SOCK_STREAM, 0, "\0" + args.abstract
        )
    if args.unix:
        results["unix-path"] = _socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, args.unix)
    char = ctypes.c_char(b"x")
    results["tiocsti"] = _raw("ioctl", 0, TIOCSTI, ctypes.addressof(char))
    results["tiocsti-high-bits"] = _raw("ioctl", 0, (1 << 32) | TIOCSTI, 0)
    results["tioclinux"] = _raw("ioctl", 0, TIOCLINUX, 0)
    results["unshare-user"] = _raw("unshare", CLONE_NEWUSER)
    results["unshare-mount"] = _raw("unshare", CLONE_NEWNS)
    results["mount"] = _outcome(_mount)
    results["clone3"] = _raw("clone3", 0, 0)
    results["fsopen"] = _raw("fsopen", 0, 0)
    results["ptrace"] = _raw("ptrace", 0, 0, 0, 0)  # PTRACE_TRACEME
    results["bpf"] = _raw("bpf", 0, 0, 0)
    results["io-uring"] = _raw("io_uring_setup", 1, 0)
    results["userfaultfd"] = _raw("userfaultfd", 0)
    results["keyctl"] = _raw("keyctl", 0, 0)  # KEYCTL_GET_KEYRING_ID
    results["personality"] = _raw("personality", 0x0008)  # PER_LINUX32
    results["setuid-chmod"] = _setuid_chmod()
    results["write-usr"] = _outcome(lambda: Path("/usr/.probe").write_bytes(b""))
    results["write-runtime"] = _outcome(lambda: Path(sys.prefix, ".probe").write_bytes(b""))
    results["i386-syscall"] = _i386_syscall()
    return results


def _mount() -> None:
    if _libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# Variables the sandbox sets: the base environment, any stage's own (policy data), and the TLS
# trust settings the kernel passes to stages with egress. Anything else leaked in.
_EXPECTED_ENV = (
    set(BASE_ENV)
    | {name for policy in POLICIES.values() for name in policy.env}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR", "LC_CTYPE", "PWD"}
)


# What each outcome must be for a policy to hold. Network operations are allowed only in
# stages whose policy has the network; everything else must fail whatever the stage.
NETWORK_OPERATIONS = frozenset({"tcp-connect", "udp-dns"})


def violations(outcomes: dict[str, str], *, network: bool) -> dict[str, str]:
    """Operations whose outcome breaks the policy (an empty dict: the policy holds)."""
    bad = {}
    for operation, outcome in outcomes.items():
        if network and operation in NETWORK_OPERATIONS:
            continue
        if outcome.startswith("allowed"):
            bad[operation] = outcome
    return bad


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret")
    parser.add_argument("--tcp")
    parser.add_argument("--abstract")
    parser.add_argument("--unix")
    print(json.dumps(run_probe(parser.parse_args()), sort_keys=True))


if __name__ == "__main__":
    main()
