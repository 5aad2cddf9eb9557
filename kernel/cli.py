"""The ``mochi-pybridge`` command line (SPEC §2): argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mochi_pybridge import __version__
from mochi_pybridge.kernel.errors import ExitCode, PybridgeError

Handler = Callable[[argparse.Namespace], int]


def default_cache_dir() -> Path:
    explicit = os.environ.get("MOCHI_PYBRIDGE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "mochi-pybridge"


def _command_in(module: str, name: str) -> Handler:
    """A handler from kernel.MODULE, imported only when used (keeps --help fast)."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        loaded = importlib.import_module(f"mochi_pybridge.kernel.{module}")
        result: int = getattr(loaded, name)(args)
        return result

    return handler


def _doctor(args: argparse.Namespace) -> int:
    from mochi_pybridge.kernel.doctor import run_doctor

    return run_doctor(as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mochi-pybridge",
        description="Sandboxed build pipeline of Mochi's bridge to Python (MEP-71).",
    )
    parser.add_argument("--version", action="version", version=f"mochi-pybridge {__version__}")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project directory")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache directory")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel stages")
    parser.add_argument("--json", action="store_true", help="newline-delimited JSON events")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="count", default=0)
    parser.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run untrusted stages without the sandbox (warned on every run, recorded in the lock)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="add or update a [python-dependencies] entry, then lock")
    add.add_argument("spec", metavar="SPEC")
    add.add_argument("--as", dest="alias")
    add.add_argument("--extras", default="")
    add.set_defaults(handler=_command_in("commands", "cmd_add"))

    lock = sub.add_parser("lock", help="resolve, fetch, stub, wrap and write mochi.lock")
    mode = lock.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 3 if mochi.lock would change")
    mode.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    lock.add_argument("--no-wait", action="store_true", help="fail if another lock runs")
    lock.set_defaults(handler=_command_in("commands", "cmd_lock"))

    sync = sub.add_parser("sync", help="regenerate python_wrap/ from mochi.lock")
    sync.set_defaults(handler=_command_in("commands", "cmd_sync"))

    update = sub.add_parser("update", help="re-resolve to newer versions")
    update.add_argument("names", nargs="*", metavar="NAME")
    update.add_argument("--allow-capability-elevation", action="store_true")
    update.set_defaults(handler=_command_in("commands", "cmd_update"))

    export = sub.add_parser("export", help="export the lock in another format")
    export.add_argument("format", choices=["pylock"])
    export.set_defaults(handler=_command_in("commands", "cmd_export"))

    stubs = sub.add_parser("stubs", help="run the stub ladder for one locked package")
    stubs.add_argument("name", metavar="NAME")
    stubs.set_defaults(handler=_command_in("commands", "cmd_stubs"))

    publish = sub.add_parser("publish", help="build, sign, attest and upload to an index")
    publish.add_argument("--to", default="pypi", help="pypi, testpypi or an upload URL")
    publish.add_argument("--dry-run", action="store_true")
    publish.add_argument(
        "--identity-token",
        default=None,
        help="OIDC identity token (default: from GitHub Actions or GitLab CI)",
    )
    publish.add_argument(
        "--trust-config",
        default=None,
        metavar="FILE",
        help="Sigstore client trust configuration (default: Sigstore's production, via TUF)",
    )
    publish.add_argument(
        "--mint-url", default=None, help="Trusted Publishing mint endpoint for --to URL"
    )
    publish.add_argument(
        "--no-attestations",
        action="store_true",
        help="do not sign: upload without PEP 740 attestations",
    )
    publish.set_defaults(handler=_command_in("publish", "cmd_publish"))

    verify = sub.add_parser("verify", help="verify PEP 740 attestations of distribution files")
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.add_argument(
        "--publisher",
        action="append",
        metavar="KEY=VALUE",
        help="require this publisher field, e.g. repository=org/name (attestations) or "
        "identity=URI-or-email / issuer=URL (Sigstore bundles)",
    )
    verify.add_argument(
        "--trust-config",
        default=None,
        metavar="FILE",
        help="Sigstore client trust configuration (default: the bundled production root)",
    )
    verify.set_defaults(handler=_command_in("publish", "cmd_verify"))

    doctor = sub.add_parser("doctor", help="check the sandbox on this machine")
    doctor.set_defaults(handler=_doctor)

    serve = sub.add_parser("serve", help="speak the kernel protocol on stdin/stdout")
    serve.set_defaults(handler=_command_in("serve", "run_serve"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cache_dir is None:
        args.cache_dir = default_cache_dir()
    if args.unsafe_no_sandbox:
        print(
            "warning: --unsafe-no-sandbox: package code runs with your full privileges",
            file=sys.stderr,
        )
    handler: Handler = args.handler
    try:
        return handler(args)
    except BaseException as exc:
        # Concurrent stages report through exception groups (trio nurseries); what the user
        # is told is the same as for a lone exception: Ctrl-C first, then our own errors.
        leaf = _user_facing(exc)
        if leaf is None or (args.verbose and not isinstance(leaf, KeyboardInterrupt)):
            raise
        if isinstance(leaf, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return 130
        assert isinstance(leaf, PybridgeError)
        print(f"error: {leaf.diagnostics()}", file=sys.stderr)
        return int(leaf.exit_code)


def _user_facing(exc: BaseException) -> BaseException | None:
    """The KeyboardInterrupt or PybridgeError in ``exc`` (searching exception groups), if
    that is all it holds besides cancellations; None for anything else (a bug: show it)."""
    import trio

    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        elif not isinstance(item, trio.Cancelled):
            leaves.append(item)
    for wanted in (KeyboardInterrupt, PybridgeError):
        found = [leaf for leaf in leaves if isinstance(leaf, wanted)]
        if found and all(isinstance(leaf, KeyboardInterrupt | PybridgeError) for leaf in leaves):
            return found[0]
    return None


__all__ = ["ExitCode", "build_parser", "main"]
