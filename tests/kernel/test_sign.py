"""Signing (SPEC §8): the real sign runner (sigstore-python + pypi-attestations) in its sandbox,
behind the kernel's allow-listing proxy, against the local Sigstore test backend; the
attestations it makes are uploaded and verified. The proxy itself: tests/kernel/test_egress.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.sigstore import Backend, github_token, sigstore_backend
from .test_publish import NO_OIDC, Flaky, cli, publish_project

IDENTITY = "https://github.com/mochi-lang/hello/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with sigstore_backend(tmp_path_factory.mktemp("sigstore")) as running:
        yield running


def signing_env(backend: Backend) -> dict[str, str]:
    # The backend's HTTPS certificate comes from a private CA, trusted like any private CA.
    return {**NO_OIDC, "SSL_CERT_FILE": str(backend.ca_bundle)}


def publish_signed(
    project: Path, backend: Backend, to: str, *extra: str, token: str | None = None
) -> tuple[int, str]:
    done = cli(project, "publish", "--to", to, "--trust-config", str(backend.trust_config),
               "--identity-token", token or github_token(), *extra, env=signing_env(backend))  # fmt: skip
    return done.returncode, done.stderr


def dist_files(project: Path) -> list[str]:
    return sorted(
        str(p) for p in (project / "dist").iterdir() if p.name.endswith((".whl", ".tar.gz"))
    )


def test_publish_signs_each_file_uploads_it_and_verify_accepts_the_attestation(
    tmp_path: Path, backend: Backend, pypiserver: str
) -> None:
    project = publish_project(tmp_path)
    seen = len(backend.requests_seen())
    code, stderr = publish_signed(project, backend, f"{pypiserver}/")
    assert code == 0, stderr
    assert f"as {IDENTITY}" in stderr
    assert "uploaded mochi_hello-0.1.0-py3-none-any.whl" in stderr
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == [
        "mochi_hello-0.1.0-py3-none-any.whl",
        "mochi_hello-0.1.0.tar.gz",
    ]
    # One certificate for both files, then a timestamp and a log entry for each.
    requests = backend.requests_seen()[seen:]
    assert requests.count("POST /api/v2/signingCert") == 1
    assert requests.count("POST /api/v1/log/entries") == 2
    for name in dist_files(project):
        attestation = json.loads(Path(name + ".publish.attestation").read_text())
        assert attestation["version"] == 1
    verified = cli(project, "verify", "--trust-config", str(backend.trust_config),
                   "--publisher", "repository=mochi-lang/hello", *dist_files(project))  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.count("published by GitHub mochi-lang/hello release.yml") == 2


def test_the_upload_carries_the_attestation(tmp_path: Path, backend: Backend) -> None:
    with Flaky([]) as index:
        code, stderr = publish_signed(publish_project(tmp_path), backend, index.url + "/")
    assert code == 0, stderr
    assert len(index.uploads) == 2
    for upload in index.uploads:
        (attestation,) = json.loads(upload["attestations"])
        assert attestation["envelope"]["statement"]
        assert attestation["verification_material"]["certificate"]


def test_verify_rejects_tampering_a_wrong_publisher_and_an_untrusted_root(
    tmp_path: Path, backend: Backend
) -> None:
    project = publish_project(tmp_path)
    code, stderr = publish_signed(project, backend, "http://127.0.0.1:9/", "--dry-run")
    assert code == 0, stderr
    wheel, sdist = dist_files(project)[1], dist_files(project)[0]
    trust = ("--trust-config", str(backend.trust_config))

    wrong = cli(project, "verify", *trust, "--publisher", "repository=evil/hello", wheel)
    assert wrong.returncode == 6
    assert "does not match" in wrong.stderr

    # Sigstore's production root does not vouch for the test backend's certificates.
    untrusted = cli(project, "verify", wheel)
    assert untrusted.returncode == 6

    # An attestation moved to another file: names and digests do not match.
    Path(sdist + ".publish.attestation").write_bytes(
        Path(wheel + ".publish.attestation").read_bytes()
    )
    swapped = cli(project, "verify", *trust, sdist)
    assert swapped.returncode == 6

    with open(wheel, "ab") as f:
        f.write(b"\0")
    tampered = cli(project, "verify", *trust, wheel)
    assert tampered.returncode == 6
    assert "FAILED" in tampered.stderr


def test_verify_checks_a_sigstore_bundle_made_by_the_sigstore_cli(
    tmp_path: Path, backend: Backend
) -> None:
    artifact = tmp_path / "mochi_hello-0.1.0.tar.gz"
    artifact.write_bytes(b"any file at all")
    signed = subprocess.run(
        [sys.executable, "-m", "sigstore", "--trust-config", str(backend.trust_config), "sign",
         "--identity-token", github_token(), str(artifact)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(backend.ca_bundle)},
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert artifact.with_name(artifact.name + ".sigstore.json").is_file()
    project = tmp_path / "proj"
    project.mkdir()
    trust = ("--trust-config", str(backend.trust_config))
    ok = cli(project, "verify", *trust, "--publisher", f"identity={IDENTITY}", str(artifact))
    assert ok.returncode == 0, ok.stderr
    assert f"published by {IDENTITY} (https://token.actions.githubusercontent.com)" in ok.stdout
    other = cli(project, "verify", *trust, "--publisher", "identity=someone@else", str(artifact))
    assert other.returncode == 6
    artifact.write_bytes(b"another file")
    tampered = cli(project, "verify", *trust, str(artifact))
    assert tampered.returncode == 6


def test_an_expired_identity_token_fails_before_any_upload(
    tmp_path: Path, backend: Backend
) -> None:
    with Flaky([]) as index:
        code, stderr = publish_signed(
            publish_project(tmp_path), backend, index.url + "/", token=github_token(lifetime=-60)
        )
    assert code == 1
    assert "identity token" in stderr
    assert index.uploads == []


def test_unreachable_signing_services_fail_cleanly(tmp_path: Path, backend: Backend) -> None:
    config = json.loads(backend.trust_config.read_text())
    for key in ("caUrls", "rekorTlogUrls", "tsaUrls"):
        for service in config["signingConfig"][key]:
            service["url"] = service["url"].replace(backend.url, "https://127.0.0.1:9")
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps(config))
    project = publish_project(tmp_path)
    done = cli(project, "publish", "--dry-run", "--trust-config", str(dead),
               "--identity-token", github_token(), env=signing_env(backend))  # fmt: skip
    assert done.returncode == 1
    assert "signing failed" in done.stderr
    assert not list((project / "dist").glob("*.attestation"))


def test_a_signing_config_with_plain_http_services_is_refused(
    tmp_path: Path, backend: Backend
) -> None:
    config = json.loads(backend.trust_config.read_text())
    config["signingConfig"]["caUrls"][0]["url"] = "http://127.0.0.1:9"
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(config))
    done = cli(publish_project(tmp_path), "publish", "--dry-run", "--trust-config", str(plain),
               "--identity-token", github_token(), env=signing_env(backend))  # fmt: skip
    assert done.returncode == 1
    assert "must be https://" in done.stderr


def test_without_a_trust_config_the_production_root_comes_through_tuf_or_nothing_is_sent(
    tmp_path: Path,
) -> None:
    # Sigstore's production TUF repository and services are unreachable from CI machines: the
    # trust stage (allowed only the TUF host) fails and nothing is uploaded. Where they are
    # reachable, Fulcio refuses this unsigned test token instead; either way, exit 1.
    with Flaky([]) as index:
        done = cli(publish_project(tmp_path), "publish", "--to", index.url + "/",
                   "--identity-token", github_token(), env=NO_OIDC)  # fmt: skip
    assert done.returncode == 1
    assert "sign of trust root failed" in done.stderr or "signing failed" in done.stderr
    assert index.uploads == []
