"""`publish` and `verify`: reproducible builds, metadata validation, real uploads into a real
index server (pypiserver) on loopback, retries and refusals against a local misbehaving
server, and offline verification of real published attestations."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "mochi_pybridge"]


def publish_project(
    root: Path, *, license_expression: str = "MIT", name: str = "mochi-hello"
) -> Path:
    project = root / "proj"
    (project / "build" / "python" / "mochi_hello").mkdir(parents=True)
    (project / "build" / "python" / "mochi_hello" / "__init__.py").write_text(
        "def greet(name: str) -> str:\n    return f'hello {name}'\n"
    )
    (project / "mochi.toml").write_text(f"""
[package]
name = "hello"
version = "0.1.0"

[python]
requires-python = ">=3.11"

[python.publish]
distribution-name = "{name}"
summary = "Hello from Mochi"
license-expression = "{license_expression}"
package-dir = "build/python/mochi_hello"
""")
    return project


def cli(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--project", str(project), "--cache-dir", str(project.parent / "cache"), *args],
                          capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_publish_dry_run_builds_reproducibly_with_source_date_epoch(tmp_path: Path) -> None:
    project = publish_project(tmp_path)
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    digests = []
    for _ in range(2):
        done = cli(
            project,
            "publish",
            "--dry-run",
            "--no-attestations",
            "--to",
            "http://127.0.0.1:9/",
            env=env,
        )
        assert done.returncode == 0, done.stderr
        digests.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (project / "dist").iterdir()
            }
        )
        time.sleep(1.1)  # a build that leaked the clock would differ now
    assert digests[0] == digests[1]
    assert sorted(digests[0]) == ["mochi_hello-0.1.0-py3-none-any.whl", "mochi_hello-0.1.0.tar.gz"]


def test_built_wheel_has_metadata_2_4_and_installs_and_imports(tmp_path: Path) -> None:
    import zipfile

    project = publish_project(tmp_path, license_expression="mit OR apache-2.0")
    assert cli(project, "publish", "--dry-run", "--no-attestations").returncode == 0
    wheel = project / "dist" / "mochi_hello-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read("mochi_hello-0.1.0.dist-info/METADATA").decode()
        assert "mochi_hello/py.typed" in zf.namelist()
    assert "Metadata-Version: 2.4" in metadata
    assert "License-Expression: MIT OR Apache-2.0" in metadata
    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    subprocess.run([uv, "venv", "-q", str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", "import mochi_hello; print(mochi_hello.greet('x'))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "hello x"


def test_wheel_with_a_limited_api_extension_is_tagged_abi3(tmp_path: Path) -> None:
    project = publish_project(tmp_path)
    (project / "build" / "python" / "mochi_hello" / "_speed.abi3.so").write_bytes(b"\x7fELF")
    assert cli(project, "publish", "--dry-run", "--no-attestations").returncode == 0
    assert [p.name for p in (project / "dist").glob("*.whl")] == [
        "mochi_hello-0.1.0-cp311-abi3-linux_x86_64.whl"
    ]


def test_publish_validates_metadata_first_and_names_every_problem(tmp_path: Path) -> None:
    project = publish_project(tmp_path, license_expression="Not A License", name="bad name!")
    done = cli(project, "publish", "--dry-run", "--no-attestations")
    assert done.returncode == 1
    assert "distribution-name 'bad name!'" in done.stderr
    assert "license-expression 'Not A License'" in done.stderr
    assert not (project / "dist").exists()


NO_OIDC = {k: "" for k in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                            "PYPI_ID_TOKEN", "SIGSTORE_ID_TOKEN")}  # fmt: skip


def test_publish_to_pypi_without_an_oidc_identity_is_M071_PUBLISH_E001(tmp_path: Path) -> None:
    done = cli(
        publish_project(tmp_path), "publish", "--no-attestations", "--to", "pypi", env=NO_OIDC
    )
    assert done.returncode == 1
    assert "M071_PUBLISH_E001_NoOIDC" in done.stderr


def test_signing_without_an_oidc_identity_is_M071_PUBLISH_E001(tmp_path: Path) -> None:
    # Signing is the default; with no identity it stops before any upload is attempted.
    done = cli(publish_project(tmp_path), "publish", "--to", "http://127.0.0.1:9/", env=NO_OIDC)
    assert done.returncode == 1
    assert "M071_PUBLISH_E001_NoOIDC" in done.stderr
    assert "upload" not in done.stderr


def test_publish_lands_in_a_real_index_and_installs_from_it(
    tmp_path: Path, pypiserver: str
) -> None:
    project = publish_project(tmp_path)
    done = cli(project, "publish", "--no-attestations", "--to", f"{pypiserver}/")
    assert done.returncode == 0, done.stderr
    assert "uploaded mochi_hello-0.1.0-py3-none-any.whl" in done.stderr
    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    subprocess.run([uv, "venv", "-q", str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-config",
                    "--index-url", f"{pypiserver}/simple/", "mochi-hello==0.1.0"], check=True)  # fmt: skip
    again = cli(project, "publish", "--no-attestations", "--to", f"{pypiserver}/")
    assert again.returncode == 1  # the same version again: the index refuses, we explain
    assert "already exists" in again.stderr or "409" in again.stderr


def _form_field(body: bytes, name: str) -> str:
    """One field of a multipart/form-data body ("" when absent)."""
    marker = f'name="{name}"\r\n\r\n'.encode()
    if marker not in body:
        return ""
    return body.split(marker, 1)[1].split(b"\r\n--", 1)[0].decode()


class Flaky:
    """A local stand-in for an index's upload API and mint endpoint that misbehaves on cue."""

    def __init__(self, upload_statuses: list[int], mint_status: int = 200) -> None:
        self.upload_statuses = upload_statuses
        self.mint_status = mint_status
        self.uploads: list[dict[str, str]] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/_/oidc/mint-token":
                    if flaky.mint_status != 200:
                        self._send(flaky.mint_status, {"errors": [{"code": "invalid-publisher",
                                   "description": "valid token, but no corresponding publisher"}]})  # fmt: skip
                    else:
                        self._send(200, {"success": True, "token": "pypi-minted-short-lived"})
                    return
                status = flaky.upload_statuses.pop(0) if flaky.upload_statuses else 200
                flaky.uploads.append({"auth": self.headers.get("Authorization", ""), "status": str(status),
                                      "has_content": str(b'name="content"' in body),
                                      "attestations": _form_field(body, "attestations")})  # fmt: skip
                self._send(status, {"message": "ok" if status == 200 else "nope"})

            def _send(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> Flaky:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def publish_to(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(publish_project(tmp_path), "publish", "--no-attestations", "--to", url, *extra)


def fake_oidc(claims: dict[str, str]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_publish_retries_transient_failures_with_backoff_and_mints_a_token(tmp_path: Path) -> None:
    with Flaky([503, 502]) as flaky:
        done = publish_to(
            tmp_path,
            f"{flaky.url}/upload/",
            "--mint-url",
            f"{flaky.url}/_/oidc/mint-token",
            "--identity-token",
            fake_oidc({"iss": "x"}),
        )
    assert done.returncode == 0, done.stderr
    assert "(3 attempts)" in done.stderr
    expected = "Basic " + base64.b64encode(b"__token__:pypi-minted-short-lived").decode()
    assert all(u["auth"] == expected and u["has_content"] == "True" for u in flaky.uploads)


def test_publish_gives_up_after_five_attempts(tmp_path: Path) -> None:
    with Flaky([503] * 10) as flaky:
        done = publish_to(tmp_path, f"{flaky.url}/upload/")
    assert done.returncode == 1
    assert "failed 5 times" in done.stderr
    assert len(flaky.uploads) == 5


@pytest.mark.parametrize(
    ("status", "words"), [(409, "already exists"), (403, "HTTP 403"), (400, "invalid")]
)
def test_publish_explains_refusals_without_retrying(
    tmp_path: Path, status: int, words: str
) -> None:
    with Flaky([status]) as flaky:
        done = publish_to(tmp_path, f"{flaky.url}/upload/")
    assert done.returncode == 1
    assert words in done.stderr
    assert len(flaky.uploads) == 1


def test_publisher_mismatch_at_the_mint_endpoint_shows_the_claims(tmp_path: Path) -> None:
    token = fake_oidc({"iss": "https://token.actions.githubusercontent.com", "repository": "me/fork",
                       "workflow_ref": "me/fork/.github/workflows/release.yml@refs/heads/main"})  # fmt: skip
    with Flaky([], mint_status=422) as flaky:
        done = publish_to(
            tmp_path,
            f"{flaky.url}/upload/",
            "--mint-url",
            f"{flaky.url}/_/oidc/mint-token",
            "--identity-token",
            token,
        )
    assert done.returncode == 1
    assert "publisher mismatch" in done.stderr
    assert '"repository": "me/fork"' in done.stderr
    assert flaky.uploads == []
