"""The fetch runner: the only stage with network. Resolves with uv (pip as a fallback) and
downloads wheels, checking each against the hash its index advertises. No package code runs
here: resolution is wheels-only (``--only-binary :all:``), so nothing is ever built.

Methods:
- ``resolve``: requirements → ``/out/resolved.json`` (every package, version and wheel the
  resolver chose, with the index's hashes).
- ``download``: one wheel → ``/out/FILENAME`` (+ ``.provenance`` when the index serves one)
  and its core metadata.

    python -I -B -m mochi_pybridge.runners.fetch --protocol-fd N
"""

from __future__ import annotations

import concurrent.futures
import email.parser
import functools
import hashlib
import html.parser
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import blake3

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import RunnerFailure, serve_one
from mochi_pybridge.runners.channel import RunnerChannel
from mochi_pybridge.runners.relay import use_proxy

MAX_PAGE = 64 * 1024 * 1024
MAX_WHEEL = 2 * 1024 * 1024 * 1024
MAX_PROVENANCE = 16 * 1024 * 1024
MAX_METADATA = 4 * 1024 * 1024
DOWNLOAD_THREADS = 8
TIMEOUT = 60
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)
_SCHEMES = ("http", "https", "file")
_FILENAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One context per stage: loading the CA bundle costs ~20 ms (SSLContext is thread-safe)."""
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    return ssl.create_default_context(cafile=cafile or None, capath=capath or None)


def _open(url: str, accept: str = "*/*") -> Any:
    if urllib.parse.urlsplit(url).scheme not in _SCHEMES:
        raise RunnerFailure("failed", f"refusing URL scheme of {url!r:.200}")
    headers = {"Accept": accept, "User-Agent": "mochi-pybridge"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT, context=_ssl_context())  # noqa: S310
    except urllib.error.HTTPError as exc:
        code = "transient" if exc.code >= 500 or exc.code == 429 else "failed"
        raise RunnerFailure(
            code, f"{url}: HTTP {exc.code} {exc.reason}", {"status": exc.code}
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise RunnerFailure("transient", f"{url}: {getattr(exc, 'reason', exc)}") from None


def _read_capped(response: Any, cap: int, what: str) -> bytes:
    data = response.read(cap + 1)
    if len(data) > cap:
        raise RunnerFailure("failed", f"{what} is larger than {cap} bytes")
    return bytes(data)


# -- resolve --------------------------------------------------------------------------------


def _uv_argv(params: Mapping[str, Any], requirements: Path, output: Path) -> list[str]:
    from uv import find_uv_bin

    indexes = list(params["indexes"])
    argv = [
        find_uv_bin(),
        "pip",
        "compile",
        str(requirements),
        "--only-binary",
        ":all:",
        "--python-version",
        str(params["python_version"]),
        "--format",
        "pylock.toml",
        "-o",
        str(output),
        "--no-config",
        "--no-header",
        "--quiet",
        "--index-url",
        indexes[0],
    ]
    for url in indexes[1:]:
        argv += ["--extra-index-url", url]
    for name in params.get("upgrade", []):
        argv += ["--upgrade-package", name]
    if params.get("upgrade_all"):
        argv.append("--upgrade")
    return argv


def _from_pylock(path: Path) -> list[dict[str, Any]]:
    data = tomllib.loads(path.read_text())
    packages = []
    for pkg in data.get("packages", []):
        wheels = [
            {
                "url": w["url"],
                "sha256": w.get("hashes", {}).get("sha256", ""),
                "size": w.get("size"),
            }
            for w in pkg.get("wheels", [])
        ]
        packages.append(
            {
                "name": pkg["name"],
                "version": pkg["version"],
                "marker": pkg.get("marker", ""),
                "wheels": wheels,
            }
        )
    return packages


def _pip_resolve(params: Mapping[str, Any], requirements: Path, tmp: Path) -> list[dict[str, Any]]:
    """The fallback resolver: pip's dry-run install report, wheels only."""
    report = tmp / "pip-report.json"
    indexes = list(params["indexes"])
    argv = [
        sys.executable,
        "-m",
        "pip",
        "--isolated",  # like uv's --no-config: no user configuration, no PIP_* variables
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary",
        ":all:",
        "--report",
        str(report),
        "--quiet",
        "--target",
        str(tmp / "pip-target"),  # pip allows --python-version only with it
        "--python-version",
        str(params["python_version"]),
        "--index-url",
        indexes[0],
        "-r",
        str(requirements),
    ]
    for url in indexes[1:]:
        argv += ["--extra-index-url", url]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        code = "integrity" if "DO NOT MATCH THE HASHES" in done.stderr else "failed"
        raise RunnerFailure(code, "pip could not resolve: " + done.stderr.strip()[-3000:])
    packages = []
    for item in json.loads(report.read_text())["install"]:
        info = item["download_info"]
        packages.append(
            {
                "name": item["metadata"]["name"],
                "version": item["metadata"]["version"],
                "marker": "",
                "wheels": [
                    {
                        "url": info["url"],
                        "sha256": info.get("archive_info", {}).get("hashes", {}).get("sha256", ""),
                        "size": None,
                    }
                ],
            }
        )
    return packages


def _network(params: Mapping[str, Any]) -> None:
    """Reach the indexes through the kernel's egress proxy (the stage has no route of its own)."""
    if params.get("proxy"):
        use_proxy(str(params["proxy"]))


def resolve(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    params = request.params
    _network(params)
    out = Path(params["out"])
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    requirements = tmp / "requirements.in"
    requirements.write_text("\n".join(params["requirements"]) + "\n")
    channel.progress(request.id, "resolving with uv")
    resolver = "uv"
    try:
        argv = _uv_argv(params, requirements, tmp / "pylock.toml")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    except (ImportError, FileNotFoundError, OSError) as exc:
        channel.log(request.id, f"uv could not run ({exc}); falling back to pip's resolver")
        done = None
    if done is not None and done.returncode == 0:
        packages = _from_pylock(tmp / "pylock.toml")
    elif done is not None and done.returncode > 0:
        # uv ran and said no: its answer stands (falling back would only hide it).
        raise _uv_failure(done.stderr)
    else:
        if done is not None:
            channel.log(
                request.id, f"uv crashed (status {done.returncode}); falling back to pip's resolver"
            )
        resolver = "pip"
        channel.progress(request.id, "resolving with pip")
        packages = _pip_resolve(params, requirements, tmp)
    (out / "resolved.json").write_text(json.dumps({"resolver": resolver, "packages": packages}))
    return {"resolver": resolver, "count": len(packages)}


def _uv_failure(stderr: str) -> RunnerFailure:
    text = stderr.strip()[-3000:]
    if "hash mismatch" in text.lower():
        return RunnerFailure(
            "integrity",
            f"a downloaded file does not match the sha256 the index advertises:\n{text}",
        )
    if "No solution found" not in text:
        return RunnerFailure("failed", f"uv could not resolve:\n{text}")
    hint = ""
    lowered = text.lower()
    if "no wheels" in lowered or "only-binary" in lowered or "no usable wheels" in lowered:
        hint = (
            "\nA dependency has no wheel for this Python and platform (it may be sdist-only). "
            "mochi-pybridge never builds sdists: building runs package code with the network on."
        )
    return RunnerFailure("failed", f"no set of versions satisfies the requirements:\n{text}{hint}")


# -- download -------------------------------------------------------------------------------


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        a = {k: (v or "") for k, v in attrs}
        href = a.get("href", "")
        url, _, fragment = href.partition("#")
        name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        hashes = {}
        if "=" in fragment:
            algo, value = fragment.split("=", 1)
            hashes[algo] = value
        self.files.append(
            {
                "filename": name,
                "url": url,
                "hashes": hashes,
                "requires-python": a.get("data-requires-python") or None,
                "yanked": ("data-yanked" in a) and (a.get("data-yanked") or True),
                "provenance": a.get("data-provenance") or None,
            }
        )


def _project_files(index_url: str, name: str) -> tuple[str, list[dict[str, Any]]]:
    page_url = urllib.parse.urljoin(index_url, f"{name}/")
    with _open(page_url, ACCEPT) as response:
        content_type = response.headers.get("Content-Type", "")
        body = _read_capped(response, MAX_PAGE, f"index page {page_url}")
        final_url = response.geturl()
    if "json" in content_type:
        try:
            files = json.loads(body)["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RunnerFailure("failed", f"{page_url}: malformed PEP 691 JSON ({exc})") from None
        return final_url, files
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    return final_url, parser.files


def latest_many(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    """For each project name, the newest wheel that installs here: on the first index that
    has the project (uv's default), not yanked, not a pre-release, Requires-Python allowing
    ``python_version``, tags among ``tags``. What the stub ladder's typeshed tier asks for
    (stub-only distributions need no dependency resolution). A project no index has is
    answered as absent."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename
    from packaging.version import Version

    params = request.params
    _network(params)
    python = Version(str(params["python_version"]))
    tags = set(params["tags"])
    results = []
    for name in params["names"]:
        channel.progress(request.id, f"looking up {name}")
        best: tuple[Any, Mapping[str, Any], str] | None = None
        for index in params["indexes"]:
            try:
                page_url, files = _project_files(index, str(name))
            except RunnerFailure as exc:
                if exc.details.get("status") == 404:
                    continue
                raise
            for entry in files:
                filename = str(entry.get("filename", ""))
                if not filename.endswith(".whl") or entry.get("yanked"):
                    continue
                try:
                    _, version, _, wheel_tags = parse_wheel_filename(filename)
                    allowed = SpecifierSet(str(entry.get("requires-python") or ""))
                except (InvalidWheelFilename, InvalidSpecifier):
                    continue
                if version.is_prerelease or python not in allowed:
                    continue
                if not any(str(t) in tags for t in wheel_tags):
                    continue
                if best is None or version > best[0]:
                    best = (version, entry, page_url)
            break  # the first index that has the project decides
        if best is None:
            results.append({"name": name, "absent": True})
            continue
        newest, chosen, page_url = best
        results.append(
            {
                "name": name,
                "version": str(newest),
                "url": urllib.parse.urljoin(page_url, str(chosen["url"])),
                "sha256": (chosen.get("hashes") or {}).get("sha256", ""),
                "size": chosen.get("size"),
            }
        )
    return {"results": results}


def _wheel_metadata(path: Path) -> dict[str, Any]:
    """Core metadata and top-level import names, read without extracting anything."""
    try:
        return _read_wheel_metadata(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise RunnerFailure("failed", f"{path.name} is not a readable wheel: {exc}") from None


def _read_wheel_metadata(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        metas = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(metas) != 1:
            raise RunnerFailure("failed", f"{path.name} has {len(metas)} METADATA files, not one")
        info = zf.getinfo(metas[0])
        if info.file_size > MAX_METADATA:
            raise RunnerFailure("failed", f"{path.name}: METADATA is too large")
        raw = zf.read(metas[0])
    message = email.parser.BytesParser().parsebytes(raw)
    top: set[str] = set()
    for name in names:
        first = name.split("/", 1)[0]
        if first.endswith((".dist-info", ".data")):
            continue
        if "/" in name:
            top.add(first)
        elif name.endswith((".py", ".so", ".pyd")):
            top.add(name.split(".", 1)[0])
    return {
        "name": message.get("Name", ""),
        "version": message.get("Version", ""),
        "requires_dist": [str(r) for r in message.get_all("Requires-Dist", [])],
        "requires_python": message.get("Requires-Python", "") or "",
        "top_level": sorted(t for t in top if t.isidentifier()),
    }


Report = Callable[[str, int, "int | None"], None]


def download(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    _network(request.params)

    def report(message: str, done: int, total: int | None) -> None:
        channel.progress(request.id, message, done, total)

    return _download_one(request.params, Path(request.params["out"]), report)


def download_many(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    """Several wheels in one stage (one sandbox start instead of one per wheel), fetched by
    ``DOWNLOAD_THREADS`` threads: each wheel costs an index page and a file, two round trips
    that are mostly waiting. Each item's failure is reported with its code; the kernel
    retries those one by one. Results keep the order of the items."""
    out = Path(request.params["out"])
    filenames = [str(item.get("filename")) for item in request.params["items"]]
    if len(set(filenames)) != len(filenames):
        raise RunnerFailure("failed", "the same wheel twice in one batch")
    _network(request.params)
    lock = threading.Lock()  # the channel is not thread-safe

    def report(message: str, done: int, total: int | None) -> None:
        with lock:
            channel.progress(request.id, message, done, total)

    def one(item: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            return {"ok": True, **_download_one(item, out, report)}
        except RunnerFailure as exc:
            return {"ok": False, "name": item.get("name"), "code": exc.code,
                    "message": exc.message[:2000]}  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        return {"results": list(pool.map(one, request.params["items"]))}


def _download_one(params: Mapping[str, Any], out: Path, report: Report) -> Mapping[str, Any]:
    name, filename = params["name"], params["filename"]
    if not _FILENAME.match(filename):
        raise RunnerFailure("failed", f"refusing odd wheel filename {filename!r}")
    page_url, files = _project_files(params["index_url"], name)
    entry = next((f for f in files if f.get("filename") == filename), None)
    if entry is None:
        raise RunnerFailure("failed", f"{filename} is not listed on {page_url}")
    advertised = (entry.get("hashes") or {}).get("sha256", "")
    if not advertised:
        raise RunnerFailure("integrity", f"{page_url} advertises no sha256 for {filename}")
    url = urllib.parse.urljoin(page_url, entry["url"])
    sha256, b3, size = hashlib.sha256(), blake3.blake3(), 0
    target = out / filename
    report(f"downloading {filename}", 0, entry.get("size"))
    with _open(url) as response, target.open("wb") as f:
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > MAX_WHEEL:
                raise RunnerFailure("failed", f"{filename} is larger than {MAX_WHEEL} bytes")
            sha256.update(chunk)
            b3.update(chunk)
            f.write(chunk)
            report(f"downloading {filename}", size, entry.get("size"))
    if sha256.hexdigest() != advertised:
        target.unlink()
        raise RunnerFailure(
            "integrity",
            f"{filename}: the downloaded bytes hash to sha256 {sha256.hexdigest()}, but the index "
            f"advertises {advertised}",
            {"file": filename, "got": sha256.hexdigest(), "advertised": advertised},
        )
    provenance = False
    prov_url = entry.get("provenance")
    if isinstance(prov_url, str) and prov_url:
        with _open(urllib.parse.urljoin(page_url, prov_url), "application/json") as response:
            (out / f"{filename}.provenance").write_bytes(
                _read_capped(response, MAX_PROVENANCE, "provenance")
            )
        provenance = True
    yanked = entry.get("yanked", False)
    return {
        "filename": filename,
        "url": url,
        "pypi_simple_sha256": advertised,
        "sha256": sha256.hexdigest(),
        "blake3": b3.hexdigest(),
        "size": size,
        "yanked": yanked if isinstance(yanked, str) else bool(yanked),
        "requires_python": entry.get("requires-python") or "",
        "provenance": provenance,
        "metadata": _wheel_metadata(target),
    }


def main() -> int:
    return serve_one(
        {
            "latest_many": latest_many,
            "resolve": resolve,
            "download": download,
            "download_many": download_many,
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
