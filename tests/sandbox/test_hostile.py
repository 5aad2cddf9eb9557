"""The hostile suite: canary packages that really attempt each behaviour inside a sandbox.

Each test asserts that the attempt failed *and* that nothing outside the sandbox changed.
Numbers refer to the hostile behaviours of the prior-art note (§7) and issue #3.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import uuid
from pathlib import Path

import pytest
import trio

from mochi_pybridge.sandbox.intake import IntakeError, IntakeRules, intake
from mochi_pybridge.sandbox.launch import run
from mochi_pybridge.sandbox.policy import POLICIES, MiB, ResourceLimits, StageKind

from ..support.processes import processes_with
from .canary import all_blocked, import_canary, tree_digest

SECRET = "CANARY-SECRET-" + uuid.uuid4().hex


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A $HOME full of canary secrets, and secret variables in the kernel's environment."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY-----\n{SECRET}\n")
    (home / ".pypirc").write_text(f"[pypi]\npassword = {SECRET}\n")
    (home / ".netrc").write_text(f"machine pypi.org password {SECRET}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("PYPI_API_TOKEN", SECRET)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(home / "agent.sock"))
    return home


def assert_secret_absent(*texts: str, out_dir: Path | None = None) -> None:
    for text in texts:
        assert SECRET not in text
    if out_dir is not None:
        for path in out_dir.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes()


# 1. Secret harvesting ------------------------------------------------------------------------


async def test_canary_cannot_read_home_secrets_or_parent_env(
    tmp_path: Path, fake_home: Path
) -> None:
    before = tree_digest(fake_home)
    body = f"""
    import os
    home = {str(fake_home)!r}
    for rel in (".ssh/id_rsa", ".pypirc", ".netrc"):
        attempt("host:" + rel, lambda: open(os.path.join(home, rel)).read())
        attempt("tilde:" + rel, lambda: open(os.path.expanduser("~/" + rel)).read())
    attempt("root-ssh", lambda: os.listdir("/root/.ssh"))
    attempt("proc-1-environ", lambda: open("/proc/1/environ", "rb").read())
    def env_secret():
        leaked = [k for k in ("GITHUB_TOKEN", "PYPI_API_TOKEN", "SSH_AUTH_SOCK") if k in os.environ]
        if leaked:
            return leaked
        raise PermissionError(1, "absent")
    attempt("env", env_secret)
    """
    result = await import_canary(tmp_path, body)
    names = [f"{k}:{r}" for k in ("host", "tilde") for r in (".ssh/id_rsa", ".pypirc", ".netrc")]
    all_blocked(result.attempts, [*names, "root-ssh", "env"])
    # /proc/1 is the sandbox's own init: readable, but it holds no secret.
    assert_secret_absent(
        result.completed.stdout,
        result.completed.stderr,
        str(result.attempts),
        out_dir=result.out_dir,
    )
    assert tree_digest(fake_home) == before


# 2. Network ----------------------------------------------------------------------------------


async def test_canary_network_attempts_fail_and_no_listener_is_contacted(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with listener, udp:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        port, udp_port = listener.getsockname()[1], udp.getsockname()[1]
        body = f"""
        import socket
        def tcp():
            s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            s.sendall(b"{SECRET}")
        attempt("tcp-loopback", tcp)
        attempt("tcp-public", lambda: socket.create_connection(("192.0.2.1", 443), timeout=2))
        attempt("udp-loopback", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {udp_port})))
        attempt("dns", lambda: socket.getaddrinfo("pypi.org", 443))
        attempt("udp-dns", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)))
        attempt("ipv6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
        attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
        """
        result = await import_canary(tmp_path, body)
        all_blocked(
            result.attempts,
            ["tcp-loopback", "tcp-public", "udp-loopback", "dns", "udp-dns", "ipv6", "netlink",
             "raw", "packet"],
        )  # fmt: skip
        with pytest.raises(BlockingIOError):
            listener.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)


# 3. Local IPC ---------------------------------------------------------------------------------


async def test_canary_cannot_reach_host_unix_sockets(tmp_path: Path) -> None:
    path_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"mochi-test-{uuid.uuid4().hex}"
    with path_sock, abstract:
        path_sock.bind(str(tmp_path / "host.sock"))
        abstract.bind("\0" + name)
        for s in (path_sock, abstract):
            s.listen()
            s.setblocking(False)
        body = f"""
        import socket
        def connect(addr):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(addr)
        attempt("path", lambda: connect({str(tmp_path / "host.sock")!r}))
        attempt("abstract", lambda: connect("\\0{name}"))
        attempt("dbus", lambda: connect("/run/dbus/system_bus_socket"))
        """
        result = await import_canary(tmp_path, body)
        all_blocked(result.attempts, ["path", "abstract", "dbus"])
        for s in (path_sock, abstract):
            with pytest.raises(BlockingIOError):
                s.accept()


async def test_two_concurrent_stages_cannot_talk(tmp_path: Path) -> None:
    name = f"mochi-ipc-{uuid.uuid4().hex}"
    server = f"""
    import socket, time
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\\0{name}")
    s.listen()
    s.settimeout(3)
    attempt("accept", lambda: s.accept())
    """
    client = f"""
    import socket, time
    def connect():
        deadline = time.time() + 2.5
        while True:
            try:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect("\\0{name}")
                return "connected"
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
    attempt("connect", connect)
    """
    results = {}

    async def one(label: str, body: str) -> None:
        sub = tmp_path / label
        sub.mkdir()
        results[label] = await import_canary(sub, body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "server", server)
        nursery.start_soon(one, "client", client)
    assert results["client"].attempts["connect"].startswith("blocked")
    assert results["server"].attempts["accept"].startswith("blocked")


# 4. TTY injection -----------------------------------------------------------------------------


async def test_canary_tty_injection_is_refused(tmp_path: Path) -> None:
    body = """
    import ctypes, fcntl
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.syscall.argtypes = [ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    c = ctypes.c_char(b"\\n")
    def ioctl(fd, request):
        if libc.syscall(16, fd, request, ctypes.addressof(c)) == -1:
            e = ctypes.get_errno()
            raise OSError(e, "ioctl")
    for fd in (0, 1, 2):
        attempt(f"tiocsti-{fd}", lambda: ioctl(fd, 0x5412))
        attempt(f"tiocsti-high-{fd}", lambda: ioctl(fd, (1 << 32) | 0x5412))
        attempt(f"tioclinux-{fd}", lambda: ioctl(fd, 0x541C))
    attempt("dev-tty", lambda: open("/dev/tty", "rb"))
    """
    result = await import_canary(tmp_path, body)
    names = [f"{k}-{fd}" for k in ("tiocsti", "tiocsti-high", "tioclinux") for fd in (0, 1, 2)]
    all_blocked(result.attempts, [*names, "dev-tty"])
    for name in names:
        assert result.attempts[name] == "blocked:EPERM", name  # the filter, not ENOTTY


# 5. Namespace / mount / filter bypass --------------------------------------------------------


async def test_canary_namespace_mount_and_filter_bypass_fail(tmp_path: Path) -> None:
    body = """
    import ctypes, mmap, os, signal
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.syscall.argtypes = [ctypes.c_long] + [ctypes.c_ulong] * 5
    def sys_(nr, *args):
        args = list(args) + [0] * (5 - len(args))
        if libc.syscall(nr, *args) == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return "ok"
    attempt("unshare-user", lambda: sys_(272, 0x10000000))
    attempt("unshare-net", lambda: sys_(272, 0x40000000))
    attempt("mount", lambda: sys_(165, 0, 0, 0, 0, 0))
    attempt("clone3", lambda: sys_(435, 0, 0))
    attempt("clone-newuser", lambda: sys_(56, 0x10000000 | 17, 0, 0, 0, 0))
    attempt("ptrace", lambda: sys_(101, 16, 1, 0, 0))  # PTRACE_ATTACH to pid 1
    attempt("bpf", lambda: sys_(321, 0, 0, 0))
    attempt("io_uring", lambda: sys_(425, 8, 0))
    attempt("userfaultfd", lambda: sys_(323, 0))
    attempt("keyctl", lambda: sys_(250, 0, 0))
    attempt("personality", lambda: sys_(135, 0x0008))
    def i386():
        pid = os.fork()
        if pid == 0:
            buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            buf.write(bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3]))
            ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            raise OSError(0, signal.Signals(os.WTERMSIG(status)).name)
        return "ran"
    attempt("i386", i386)
    """
    result = await import_canary(tmp_path, body)
    names = ["unshare-user", "unshare-net", "mount", "clone3", "clone-newuser", "ptrace", "bpf",
             "io_uring", "userfaultfd", "keyctl", "personality", "i386"]  # fmt: skip
    all_blocked(result.attempts, names)
    assert result.attempts["clone3"] == "blocked:ENOSYS"
    assert result.attempts["unshare-user"] == "blocked:EPERM"


# 6. Persistence and tampering ----------------------------------------------------------------


async def test_canary_cannot_persist_or_tamper(tmp_path: Path) -> None:
    import site
    import sysconfig

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "blob").write_text("cached")
    cache_before = tree_digest(cache)
    purelib = sysconfig.get_paths()["purelib"]
    stdlib = sysconfig.get_paths()["stdlib"]
    body = f"""
    import os, stat
    here = os.path.dirname(__file__)
    attempt("pth", lambda: open({purelib!r} + "/evil.pth", "w").write("import evil"))
    attempt("sitecustomize", lambda: open({stdlib!r} + "/sitecustomize.py", "w").write("x"))
    attempt("usercustomize", lambda: open({site.getusersitepackages()!r} + "/usercustomize.py", "w"))
    attempt("tamper-input", lambda: open(os.path.join(here, "__init__.py"), "a").write("#"))
    attempt("new-input-file", lambda: open(os.path.join(here, "extra.py"), "w"))
    attempt("cache", lambda: open({str(cache / "blob")!r}, "w").write("poisoned"))
    def setuid():
        open("/out/suid", "w").close()
        os.chmod("/out/suid", 0o4755)
    attempt("setuid", setuid)
    attempt("setgid", lambda: os.chmod("/out/suid", 0o2755))
    """
    result = await import_canary(tmp_path, body)
    names = ["pth", "sitecustomize", "usercustomize", "tamper-input", "new-input-file", "cache",
             "setuid", "setgid"]  # fmt: skip
    all_blocked(result.attempts, names)
    assert not Path(purelib, "evil.pth").exists()
    assert not Path(stdlib, "sitecustomize.py").exists()
    assert tree_digest(cache) == cache_before
    pkg = tmp_path / "pkg"
    assert not any(p.name == "extra.py" for p in pkg.rglob("*"))
    assert not (result.out_dir / "suid").stat().st_mode & 0o6000


# 7. Hostile outputs ---------------------------------------------------------------------------

HOSTILE_OUTPUTS = {
    "symlink-to-secret": "os.symlink({secret!r}, '/out/id_rsa.pyi')",
    "symlink-dir": "os.symlink('/', '/out/root')",
    "hardlink": "open('/out/a.pyi', 'w').close(); os.link('/out/a.pyi', '/out/b.pyi')",
    "escape-name": "open('/out/\\x1b[2J..pyi', 'w').close()",
    "dash-name": "open('/out/-rf.pyi', 'w').close()",
    "sparse": "f = open('/out/big.pyi', 'wb'); f.truncate(400 * 1024 * 1024); f.close()",
    "fifo": "os.mkfifo('/out/pipe.pyi')",
    "deep": (
        "os.chdir('/out'); [(os.mkdir('d'), os.chdir('d')) for _ in range(1000)]; "
        "open('x.pyi', 'w').close()"
    ),
    "unexpected-suffix": "open('/out/evil.so', 'w').close()",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_OUTPUTS))
async def test_hostile_output_is_refused_by_intake(
    tmp_path: Path, fake_home: Path, case: str
) -> None:
    secret = fake_home / ".ssh" / "id_rsa"
    before = tree_digest(fake_home)
    code = HOSTILE_OUTPUTS[case].format(secret=str(secret))
    body = f"""
    import os
    def plant():
        {code}
    attempt("plant", plant)
    """
    result = await import_canary(tmp_path, body)
    assert result.attempts["plant"].startswith("allowed"), result.attempts
    (result.out_dir / "attempts.json").unlink()
    with pytest.raises(IntakeError):
        intake(result.out_dir, IntakeRules(suffixes=frozenset({".pyi"})))
    assert tree_digest(fake_home) == before
    remove_tree(result.out_dir)


def remove_tree(root: Path) -> None:
    """Iterative removal: pytest's own cleanup recurses and cannot remove 1000-deep trees."""
    # os.walk recurses on Python 3.11 too, so walk down with an explicit stack.
    stack = [root]
    while stack:
        current = stack[-1]
        subdirs = [p for p in current.iterdir() if p.is_dir() and not p.is_symlink()]
        if subdirs:
            stack.extend(subdirs)
            continue
        for path in current.iterdir():
            path.unlink()
        current.rmdir()
        stack.pop()


async def test_hostile_output_file_count_flood_is_stopped(tmp_path: Path) -> None:
    policy = dataclasses.replace(
        POLICIES[StageKind.STUBGEN],
        limits=ResourceLimits(output_entries=20_000, wall_clock_seconds=60),
    )
    body = """
    import os
    def flood():
        for i in range(100_000):
            open(f"/out/f{i}.pyi", "w").close()
    attempt("flood", flood)
    """
    result = await import_canary(tmp_path, body, policy=policy)
    assert result.completed.quota_exceeded, "the watchdog should have killed the stage"
    with pytest.raises(IntakeError):
        intake(result.out_dir, IntakeRules(suffixes=frozenset({".pyi", ".json"}), max_files=10_000))


async def test_ansi_flood_on_stdout_and_stderr_is_capped_and_stripped(tmp_path: Path) -> None:
    body = """
    import sys
    for stream in (sys.stdout, sys.stderr):
        for _ in range(20_000):
            stream.write("\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x1b[0m\\x1bP+q\\x1b\\\\\\r\\x08")
        stream.flush()
    """
    result = await import_canary(tmp_path, body)
    for text in (result.completed.stdout, result.completed.stderr):
        assert "\x1b" not in text
        assert "\r" not in text and "\x07" not in text and "\x08" not in text
        assert "red" in text
        assert len(text) < 70 * 1024
        assert "more bytes dropped" in text


# 8. Exhaustion -------------------------------------------------------------------------------

SMALL = dataclasses.replace(
    POLICIES[StageKind.STUBGEN],
    limits=ResourceLimits(
        address_space=1024 * MiB,
        file_size=16 * MiB,
        tmpfs_size=8 * MiB,
        processes=32,
        wall_clock_seconds=30,
        output_bytes=64 * MiB,
    ),
)


async def test_fork_bomb_is_contained(tmp_path: Path) -> None:
    marker = f"forkbomb-{uuid.uuid4().hex}"
    body = f"""
    import os, sys, time
    def bomb():
        children = 0
        while True:
            pid = os.fork()
            if pid == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "{marker}"])
            children += 1
            if children > 10_000:
                return children
    attempt("fork", bomb)
    """
    result = await import_canary(tmp_path, body, policy=SMALL)
    all_blocked(result.attempts, ["fork"])
    assert result.attempts["fork"] == "blocked:EAGAIN"
    assert processes_with(marker) == []


async def test_memory_balloon_is_contained(tmp_path: Path) -> None:
    body = """
    attempt("balloon", lambda: len(bytearray(4 * 1024 ** 3)))
    """
    result = await import_canary(tmp_path, body, policy=SMALL)
    assert result.attempts["balloon"] == "blocked:MemoryError"


async def test_filling_tmp_and_out_is_contained(tmp_path: Path) -> None:
    body = """
    def fill(path):
        with open(path, "wb") as f:
            while True:
                f.write(b"x" * (1 << 20))
    attempt("tmp", lambda: fill("/tmp/fill"))
    attempt("out", lambda: fill("/out/fill.pyi"))
    """
    result = await import_canary(tmp_path, body, policy=SMALL)
    assert result.attempts["tmp"] == "blocked:ENOSPC"
    assert result.attempts["out"] == "blocked:EFBIG"
    assert (result.out_dir / "fill.pyi").stat().st_size <= 16 * MiB


async def test_cpu_spin_past_the_timeout_is_killed(tmp_path: Path) -> None:
    marker = f"spin-{uuid.uuid4().hex}"
    body = f"""
    import os, sys
    os.execv(sys.executable, [sys.executable, "-c", "while True: pass", "{marker}"])
    """
    result = await import_canary(tmp_path, body, wall_clock=1.0)
    assert result.completed.timed_out
    assert processes_with(marker) == []


async def test_double_forked_daemon_dies_with_the_stage(tmp_path: Path) -> None:
    marker = f"daemon-{uuid.uuid4().hex}"
    body = f"""
    import os, sys
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
        os._exit(0)
    os.wait()
    attempt("daemonized", lambda: "yes")
    """
    result = await import_canary(tmp_path, body)
    assert result.attempts["daemonized"].startswith("allowed")
    assert not result.completed.timed_out
    await trio.sleep(0.1)
    assert processes_with(marker) == []


# 9. Evasion ----------------------------------------------------------------------------------


async def test_time_bomb_after_the_timeout_never_fires(tmp_path: Path, fake_home: Path) -> None:
    body = f"""
    import time
    time.sleep(5)
    attempt("late-read", lambda: open({str(fake_home / ".ssh" / "id_rsa")!r}).read())
    """
    result = await import_canary(tmp_path, body, wall_clock=1.0)
    assert result.completed.timed_out
    assert result.attempts == {}


async def test_containment_does_not_depend_on_detection(tmp_path: Path, fake_home: Path) -> None:
    """The canary looks for sandbox tells and attacks in *both* branches: each must fail."""
    body = f"""
    import os, socket
    tells = {{
        "hostname": socket.gethostname(),
        "uid": os.getuid(),
        "seccomp": [l for l in open("/proc/self/status") if l.startswith("Seccomp:")],
        "home": os.environ.get("HOME"),
    }}
    looks_sandboxed = tells["hostname"] == "sandbox" or tells["uid"] == 65534
    for branch in ("believes-sandboxed", "believes-free"):
        attempt(branch + "-read", lambda: open({str(fake_home / ".ssh" / "id_rsa")!r}).read())
        attempt(branch + "-net", lambda: socket.create_connection(("192.0.2.1", 80), timeout=1))
    attempt("tells", lambda: (looks_sandboxed, tells))
    """
    result = await import_canary(tmp_path, body)
    all_blocked(
        result.attempts,
        [f"{b}-{k}" for b in ("believes-sandboxed", "believes-free") for k in ("read", "net")],
    )


# 10. Compile stage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        '#include "{secret}"\nint x;\n',
        '__asm__(".section .rodata\\n.incbin \\"{secret}\\"\\n");\nint x;\n',
    ],
    ids=["include", "incbin"],
)
async def test_compile_stage_cannot_embed_host_secrets(
    tmp_path: Path, fake_home: Path, source: str
) -> None:
    secret = fake_home / ".ssh" / "id_rsa"
    src = tmp_path / "src"
    src.mkdir()
    (src / "wrapper.c").write_text(source.format(secret=secret))
    out = tmp_path / "out"
    out.mkdir()
    done = await run(
        POLICIES[StageKind.COMPILE],
        ["/usr/bin/cc", "-c", "/in/src/wrapper.c", "-o", "/out/wrapper.o"],
        inputs={"src": src},
        output_dir=out,
    )
    assert done.returncode != 0
    assert "No such file or directory" in done.stderr or "file not found" in done.stderr
    assert_secret_absent(done.stdout, done.stderr, out_dir=out)


async def test_compile_stage_compiles_an_honest_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.c").write_text("int answer(void) { return 42; }\n")
    out = tmp_path / "out"
    out.mkdir()
    done = await run(
        POLICIES[StageKind.COMPILE],
        ["/usr/bin/cc", "-O2", "-fPIC", "-shared", "/in/src/ok.c", "-o", "/out/ok.so"],
        inputs={"src": src},
        output_dir=out,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "ok.so").stat().st_size > 0


async def test_stage_output_dir_must_be_fresh(tmp_path: Path) -> None:
    (tmp_path / "stale").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        await run(POLICIES[StageKind.STUBGEN], [sys.executable, "-c", "0"], output_dir=tmp_path)
