"""Upload to an index: Trusted Publishing (OIDC identity token → the index's mint endpoint →
a short-lived upload token) and the upload API that twine and uv use. No long-lived API
tokens. Transient failures (5xx, connection errors) are retried with exponential backoff, at
most five attempts; 400, 403 and 409 are explained."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mochi_pybridge.kernel.errors import PybridgeError

TARGETS = {
    "pypi": "https://upload.pypi.org/legacy/",
    "testpypi": "https://test.pypi.org/legacy/",
}
MAX_ATTEMPTS = 5
MAX_RESPONSE = 1 << 20


class PublishError(PybridgeError):
    pass


class NoOIDC(PublishError):
    def diagnostics(self) -> str:
        return (
            "M071_PUBLISH_E001_NoOIDC: no OIDC identity token is available. Publishing to PyPI "
            "uses Trusted Publishing only: run in GitHub Actions (with `permissions: id-token: "
            "write`), in GitLab CI (with an `id_tokens:` entry exposing SIGSTORE_ID_TOKEN or "
            "PYPI_ID_TOKEN), or pass --identity-token. Long-lived API tokens are not supported."
        )


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


Opener = Callable[[urllib.request.Request], Response]


def _open(request: urllib.request.Request) -> Response:
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as r:  # noqa: S310
            return Response(r.status, r.read(MAX_RESPONSE))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(MAX_RESPONSE))


def _check_url(url: str) -> str:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PublishError(f"refusing to upload to {url!r}: only http(s) URLs")
    return url


def identity_token(explicit: str | None, *, audience: str) -> str | None:
    """The OIDC token for ``audience``: --identity-token, else the CI's ambient credential as
    sigstore-python finds it (the ``id`` package: GitHub Actions, GitLab CI's ``<AUD>_ID_TOKEN``,
    Google Cloud, CircleCI, Buildkite), else an ``<AUD>_ID_TOKEN`` variable set by hand."""
    if explicit:
        return explicit
    import id as ambient

    try:
        token = ambient.detect_credential(audience)
    except ambient.IdentityError as exc:
        raise PublishError(f"the CI environment did not provide an OIDC token: {exc}") from None
    if token:
        return token
    variable = re.sub(r"[^A-Z0-9]", "_", audience.upper())
    variable = ("_" + variable[1:] if variable[:1].isdigit() else variable) + "_ID_TOKEN"
    return os.environ.get(variable) or None


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: only for explaining a refusal."""
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def mint_token(mint_url: str, oidc: str, *, opener: Opener = _open) -> str:
    body = json.dumps({"token": oidc}).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(  # noqa: S310 (_check_url allows http(s) only)
        _check_url(mint_url), data=body, method="POST", headers=headers
    )
    response = opener(request)
    if response.status == 200:
        return str(json.loads(response.body)["token"])
    try:
        errors = json.loads(response.body).get("errors", [])
        reasons = "; ".join(str(e.get("description", e)) for e in errors)
    except (ValueError, AttributeError):
        reasons = response.body[:300].decode("utf-8", "replace")
    claims = jwt_claims(oidc)
    shown = {
        k: claims[k]
        for k in ("iss", "repository", "workflow_ref", "ref", "environment", "project_path", "sub")
        if k in claims
    }
    raise PublishError(
        f"the index refused Trusted Publishing (HTTP {response.status}): {reasons}. The token "
        f"presented these claims: {json.dumps(shown, sort_keys=True)}; they must match a trusted "
        "publisher configured for the project on the index (publisher mismatch)."
    )


def _multipart(fields: list[tuple[str, str]], file_path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        disposition = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    disposition = f'Content-Disposition: form-data; name="content"; filename="{file_path.name}"'
    parts.append(
        f"--{boundary}\r\n{disposition}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + file_path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload_fields(
    path: Path, metadata: Mapping[str, str], attestations: list[Any] | None
) -> list[tuple[str, str]]:
    wheel = path.name.endswith(".whl")
    fields = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("metadata_version", "2.4"),
        ("name", metadata["name"]),
        ("version", metadata["version"]),
        ("summary", metadata["summary"]),
        ("license_expression", metadata["license_expression"]),
        ("requires_python", metadata["requires_python"]),
        ("filetype", "bdist_wheel" if wheel else "sdist"),
        ("pyversion", path.name.split("-")[-3] if wheel else "source"),
        ("sha256_digest", hashlib.sha256(path.read_bytes()).hexdigest()),
    ]
    if attestations:
        fields.append(("attestations", json.dumps(attestations)))
    return fields


def upload(
    url: str,
    path: Path,
    fields: list[tuple[str, str]],
    token: str | None,
    *,
    opener: Opener = _open,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda s: None,
) -> int:
    """Upload one file; returns the attempts it took. PublishError explains a refusal."""
    body, content_type = _multipart(fields, path)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()
        )
    for attempt in range(1, MAX_ATTEMPTS + 1):
        request = urllib.request.Request(  # noqa: S310 (_check_url allows http(s) only)
            _check_url(url), data=body, method="POST", headers=headers
        )
        try:
            response = opener(request)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            response = Response(0, str(getattr(exc, "reason", exc)).encode())
        if response.status in (200, 201):
            return attempt
        text = response.body[:500].decode("utf-8", "replace").strip()
        if response.status == 409:
            raise PublishError(
                f"{path.name} already exists on {url} with different contents (HTTP 409). An index "
                "never replaces a file: publish a new version."
            )
        if response.status == 403:
            raise PublishError(
                f"{url} refused the upload of {path.name} (HTTP 403: {text}); the upload "
                "token is not valid for this project (check the trusted publisher)"
            )
        if response.status == 400:
            raise PublishError(f"{url} rejected {path.name} as invalid (HTTP 400: {text})")
        if response.status and response.status < 500 and response.status != 429:
            raise PublishError(f"{url} answered HTTP {response.status} for {path.name}: {text}")
        if attempt == MAX_ATTEMPTS:
            raise PublishError(
                f"uploading {path.name} failed {MAX_ATTEMPTS} times; last: "
                f"{response.status or 'connection error'} {text}"
            )
        delay = random.uniform(0, min(30.0, 1.0 * 2 ** (attempt - 1)))  # noqa: S311
        log(
            f"upload of {path.name}: attempt {attempt} failed ({response.status or text}); "
            f"retrying in {delay:.1f}s"
        )
        sleep(delay)
    raise AssertionError("unreachable")
