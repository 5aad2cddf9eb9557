"""A local Sigstore TEST BACKEND for the signing tests (the public Sigstore services cannot be
reached from these machines): ``sigstore_backend/server.js`` serves the Sigstore project's own
``@sigstore/mock`` Fulcio, Rekor and timestamp-authority handlers over HTTPS on loopback and
writes a client trust configuration naming them. sigstore-python, in the real sign runner, is
pointed at it with ``--trust-config``; nothing on the production path is replaced.

Also here: the TLS certificate authority the backend's HTTPS uses (trusted through
``SSL_CERT_FILE``, as a private CA would be), and OIDC identity tokens shaped like GitHub
Actions' (unsigned: sigstore clients do not verify them, Fulcio does, and the mock trusts them).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BACKEND = Path(__file__).with_name("sigstore_backend")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


def install_backend() -> None:
    """``npm ci`` the backend's pinned dependencies once (``.ci/setup`` does it up front)."""
    if (BACKEND / "node_modules" / "@sigstore" / "mock").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the Sigstore test backend needs Node.js and npm (.ci/setup installs)")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BACKEND,
        check=True,
        timeout=300,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a loopback server certificate: (ca.pem, server.crt, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("mochi-pybridge test CA"))
        .issuer_name(_name("mochi-pybridge test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.crt", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def github_token(
    repository: str = "mochi-lang/hello",
    workflow: str = "release.yml",
    *,
    audience: str | list[str] = "sigstore",
    lifetime: int = 600,
) -> str:
    """An OIDC identity token with the claims GitHub Actions puts in one."""
    now = int(time.time())
    ref = "refs/heads/main"
    workflow_ref = f"{repository}/.github/workflows/{workflow}@{ref}"
    claims = {
        "iss": GITHUB_ISSUER,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        # Fulcio puts the workflow's URI in the certificate's SAN; the mock takes it from `sub`.
        "sub": f"https://github.com/{workflow_ref}",
        "repository": repository,
        "repository_owner": repository.split("/", maxsplit=1)[0],
        "repository_id": "1",
        "repository_owner_id": "2",
        "ref": ref,
        "sha": "0" * 40,
        "workflow_ref": workflow_ref,
        "job_workflow_ref": workflow_ref,
        "event_name": "push",
        "runner_environment": "github-hosted",
    }
    return jwt.encode(claims, "test-backend-key-of-thirty-two-bytes!", algorithm="HS256")


@dataclass(frozen=True)
class Backend:
    url: str
    trust_config: Path
    ca_bundle: Path  # the system bundle plus the test CA, for SSL_CERT_FILE
    log: Path  # one line per request the backend served

    def requests_seen(self) -> list[str]:
        return self.log.read_text().splitlines()


@contextmanager
def sigstore_backend(directory: Path) -> Iterator[Backend]:
    install_backend()
    directory.mkdir(parents=True, exist_ok=True)
    ca, cert, key = write_tls_files(directory)
    bundle = directory / "ca-bundle.pem"
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle.write_bytes((system.read_bytes() if system.is_file() else b"") + ca.read_bytes())
    trust = directory / "trust_config.json"
    log = directory / "backend.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            ["node", str(BACKEND / "server.js"), "--key", str(key), "--cert", str(cert),
             "--trust-config", str(trust)],
            stdout=subprocess.PIPE, stderr=log_file, cwd=BACKEND,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            raise RuntimeError(f"the Sigstore test backend did not start: {log.read_text()}")
        port = json.loads(line)["port"]
        yield Backend(f"https://127.0.0.1:{port}", trust, bundle, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
