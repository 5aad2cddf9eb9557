"""The seccomp filter as data: a deny-list over a default of ALLOW (SPEC §7; prior-art §6.1).

Python stages import arbitrary packages, so the syscalls they need are unknowable: an allow-list
would break them. Instead the rules below shut the doors that lead out of the sandbox (nested
namespaces, mounts, ptrace, the keyring, bpf, io_uring, TTY injection, setuid bits, foreign
socket families) and syscalls from a non-native ABI kill the process.
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from mochi_pybridge.sandbox.policy import StagePolicy

# Address families by name; socket() for any other family below AF_MAX is refused.
SOCKET_FAMILIES: Final = {"unix": 1, "inet": 2, "inet6": 10, "netlink": 16, "packet": 17}
_AF_MAX: Final = 64

CLONE_NAMESPACE_FLAGS: Final = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
TIOCSTI: Final = 0x5412
TIOCLINUX: Final = 0x541C
S_ISUID: Final = 0o4000
S_ISGID: Final = 0o2000


@dataclass(frozen=True, slots=True)
class ArgMatch:
    """Argument ``index`` satisfies ``op`` ("eq", "ne", "masked_eq", "ge") against ``value``."""

    index: int
    op: str
    value: int
    mask: int = 0


@dataclass(frozen=True, slots=True)
class Rule:
    syscall: str
    errno: int  # the error the call returns instead of running
    args: tuple[ArgMatch, ...] = ()
    reason: str = ""


def _deny(names: str, err: int, reason: str) -> Iterator[Rule]:
    for name in names.split():
        yield Rule(name, err, (), reason)


def base_rules() -> tuple[Rule, ...]:
    rules: list[Rule] = []
    rules += _deny(
        "unshare setns mount umount2 pivot_root chroot",
        errno.EPERM,
        "nested namespaces and mounts",
    )
    rules += _deny(
        "clone3 open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr",
        errno.ENOSYS,
        "clone3's flags cannot be inspected; ENOSYS makes libc fall back to clone "
        "(CVE-2021-41133); the new mount API",
    )
    for flag, bit in CLONE_NAMESPACE_FLAGS.items():
        rules.append(Rule("clone", errno.EPERM, (ArgMatch(0, "masked_eq", bit, bit),), flag))
    for request, name in ((TIOCSTI, "TIOCSTI"), (TIOCLINUX, "TIOCLINUX")):
        rules.append(
            Rule(
                "ioctl",
                errno.EPERM,
                (ArgMatch(1, "masked_eq", request, 0xFFFFFFFF),),
                f"{name} terminal injection (CVE-2017-5226, CVE-2023-28100)",
            )
        )
    rules += _deny("add_key keyctl request_key", errno.EPERM, "the keyring is not namespaced")
    rules += _deny(
        "ptrace process_vm_readv process_vm_writev perf_event_open kcmp pidfd_getfd lookup_dcookie",
        errno.EPERM,
        "debugging and introspection",
    )
    rules += _deny(
        "bpf userfaultfd io_uring_setup io_uring_enter io_uring_register",
        errno.EPERM,
        "large kernel attack surface",
    )
    rules += _deny(
        "init_module finit_module delete_module kexec_load kexec_file_load reboot acct "
        "quotactl swapon swapoff syslog sethostname setdomainname settimeofday "
        "clock_settime clock_adjtime adjtimex iopl ioperm vhangup uselib ustat sysfs "
        "modify_ldt",
        errno.EPERM,
        "system administration",
    )
    rules += _deny(
        "mbind migrate_pages move_pages set_mempolicy get_mempolicy",
        errno.EPERM,
        "NUMA/VM operations",
    )
    rules += _deny(
        "open_by_handle_at name_to_handle_at fanotify_init",
        errno.EPERM,
        "file-handle escapes (Shocker)",
    )
    # personality: only PER_LINUX (0). libseccomp allows one comparison per argument, so the
    # 0xffffffff query is refused too; nothing a stage runs needs it.
    rules.append(
        Rule(
            "personality",
            errno.EPERM,
            (ArgMatch(0, "ne", 0),),
            "execution domains other than PER_LINUX",
        )
    )
    for syscall, mode_arg in (("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2)):
        for bit in (S_ISUID, S_ISGID):
            rules.append(
                Rule(
                    syscall,
                    errno.EPERM,
                    (ArgMatch(mode_arg, "masked_eq", bit, bit),),
                    "setuid/setgid bits (CVE-2024-38531)",
                )
            )
    return tuple(rules)


def stage_rules(policy: StagePolicy) -> tuple[Rule, ...]:
    """The base rules plus the policy's socket families and extra denials."""
    rules = list(base_rules())
    allowed = {SOCKET_FAMILIES[name] for name in policy.socket_families}
    for family in range(_AF_MAX):
        if family not in allowed:
            rules.append(
                Rule(
                    "socket",
                    errno.EAFNOSUPPORT,
                    (ArgMatch(0, "eq", family),),
                    "socket family not allowed for this stage",
                )
            )
    rules.append(
        Rule("socket", errno.EAFNOSUPPORT, (ArgMatch(0, "ge", _AF_MAX),), "unknown family")
    )
    rules += _deny(" ".join(policy.extra_denied_syscalls), errno.EPERM, "stage-specific")
    return tuple(rules)


def build_filter(policy: StagePolicy) -> object:
    """A ``pyseccomp.SyscallFilter`` for ``policy`` (native arch only; others are killed)."""
    import pyseccomp

    filt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    _add_rules(filt, stage_rules(policy))
    return filt


def _add_rules(filt: Any, rules: tuple[Rule, ...]) -> None:
    import pyseccomp

    ops = {"eq": pyseccomp.EQ, "ne": pyseccomp.NE, "ge": pyseccomp.GE}
    arch = pyseccomp.system_arch()
    filt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    for rule in rules:
        if pyseccomp.resolve_syscall(arch, rule.syscall) < 0:
            # Not a syscall of this architecture (or unknown to this libseccomp), so no
            # process here can make it either.
            continue
        args = []
        for match in rule.args:
            if match.op == "masked_eq":
                args.append(
                    pyseccomp.Arg(match.index, pyseccomp.MASKED_EQ, match.mask, match.value)
                )
            else:
                args.append(pyseccomp.Arg(match.index, ops[match.op], match.value))
        filt.add_rule(pyseccomp.ERRNO(rule.errno), rule.syscall, *args)


def bpf_program(policy: StagePolicy) -> bytes:
    """The BPF program bwrap's ``--seccomp FD`` expects (cached: it depends on rules only)."""
    return _bpf_for_rules(stage_rules(policy))


@cache
def _bpf_for_rules(rules: tuple[Rule, ...]) -> bytes:
    import pyseccomp

    filt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    _add_rules(filt, rules)
    with tempfile.TemporaryFile() as out:
        filt.export_bpf(out)
        out.seek(0)
        return out.read()


# The late filter (prior-art §6.2): installed by a runner on itself once its trusted code is
# loaded. Filters stack, so this only narrows what the stage's filter already allows.
LATE_NO_EXEC: Final = (
    Rule("execve", errno.EPERM, reason="the sign runner never runs programs"),
    Rule("execveat", errno.EPERM, reason="the sign runner never runs programs"),
)


def deny_exec() -> None:
    """From now on this process and its children cannot execute programs (EPERM)."""
    import pyseccomp

    filt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    _add_rules(filt, LATE_NO_EXEC)
    filt.load()
