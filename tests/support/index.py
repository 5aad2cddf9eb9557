"""A real package index on loopback: PEP 503 HTML and PEP 691 JSON pages over HTTP, serving
files from a directory. Tests can make it lie (wrong hash, tampered bytes) or yank files."""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename


@dataclass
class IndexState:
    root: Path
    yanked: dict[str, str] = field(default_factory=dict)  # filename -> reason
    requires_python: dict[str, str] = field(default_factory=dict)  # filename -> specifier
    advertise: dict[str, str] = field(default_factory=dict)  # filename -> sha256 to claim
    tamper: set[str] = field(default_factory=set)  # filenames whose bytes are altered
    requests: list[str] = field(default_factory=list)
    json_pages: bool = True  # False: a PEP 503-only index (HTML whatever the client accepts)
    # An origin ("http://host:port") the pages link files to instead of their own (PEP 503
    # allows absolute file URLs anywhere); the files are still served by this server.
    file_origin: str = ""

    def project_of(self, filename: str) -> str:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        return str(parse_sdist_filename(filename)[0])

    def files(self, project: str) -> list[Path]:
        wanted = canonicalize_name(project)
        return sorted(
            p for p in self.root.iterdir()
            if p.is_file() and not p.name.endswith(".provenance")
            and canonicalize_name(self.project_of(p.name)) == wanted
        )  # fmt: skip


def _handler(state: IndexState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        head_only = False

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not self.head_only:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.head_only = True
            self.do_GET()

        def do_GET(self) -> None:
            state.requests.append(self.path)
            match = re.fullmatch(r"/simple/([^/]+)/", self.path)
            if self.path == "/simple/":
                names = sorted({state.project_of(p.name) for p in state.root.iterdir()
                                if not p.name.endswith(".provenance")})  # fmt: skip
                links = "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
                self._send(200, f"<html><body>{links}</body></html>".encode(), "text/html")
            elif match:
                self._project(match.group(1))
            elif self.path.startswith("/files/"):
                path = state.root / self.path.removeprefix("/files/")
                if not path.is_file():
                    self._send(404, b"not found", "text/plain")
                    return
                data = path.read_bytes()
                if path.name in state.tamper:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                self._send(200, data, "application/octet-stream")
            else:
                self._send(404, b"not found", "text/plain")

        def _project(self, project: str) -> None:
            files = state.files(project)
            if not files:
                self._send(404, b"no such project", "text/plain")
                return
            entries = []
            for path in files:
                sha = (
                    state.advertise.get(path.name) or hashlib.sha256(path.read_bytes()).hexdigest()
                )
                entry: dict[str, object] = {
                    "filename": path.name,
                    "url": f"{state.file_origin}/files/{path.name}",
                    "hashes": {"sha256": sha},
                    "size": path.stat().st_size,
                }
                if path.name in state.yanked:
                    entry["yanked"] = state.yanked[path.name]
                if path.name in state.requires_python:
                    entry["requires-python"] = state.requires_python[path.name]
                prov = path.with_name(path.name + ".provenance")
                if prov.is_file():
                    entry["provenance"] = f"/files/{prov.name}"
                entries.append(entry)
            if state.json_pages and "application/vnd.pypi.simple.v1+json" in self.headers.get(
                "Accept", ""
            ):
                body = {"meta": {"api-version": "1.1"}, "name": project, "files": entries,
                        "versions": []}  # fmt: skip
                self._send(200, json.dumps(body).encode(), "application/vnd.pypi.simple.v1+json")
                return
            links = []
            for e in entries:
                attrs = f' href="{e["url"]}#sha256={e["hashes"]["sha256"]}"'  # type: ignore[index]
                if "yanked" in e:
                    attrs += f' data-yanked="{html.escape(str(e["yanked"]))}"'
                if "requires-python" in e:
                    attrs += f' data-requires-python="{html.escape(str(e["requires-python"]))}"'
                if "provenance" in e:
                    attrs += f' data-provenance="{e["provenance"]}"'
                links.append(f"<a{attrs}>{e['filename']}</a><br/>")
            self._send(
                200, ("<html><body>" + "\n".join(links) + "</body></html>").encode(), "text/html"
            )

    return Handler


@contextmanager
def serve_index(root: Path) -> Iterator[tuple[str, IndexState]]:
    """Serve ``root`` as an index; yields (simple index URL, state to tweak)."""
    state = IndexState(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
