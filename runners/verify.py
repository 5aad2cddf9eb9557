"""The verify runner: checks PEP 740 attestations against a distribution, offline, with the
Sigstore trust root bundled in sigstore-python (or a given client trust configuration). No
network: it runs under the synthesis policy. Parsing hostile JSON and certificates happens
here, not in the kernel.

Method ``attestation``: params ``dist`` (path of the distribution file, named as published),
``provenance`` (path of a PyPI provenance JSON, or with ``bare`` of one attestation as uploaded,
``FILE.publish.attestation``), optional ``trust_config`` and ``expected`` publisher fields that
must match. Result: the publisher identity and the predicate types verified.

Method ``bundle``: a Sigstore bundle over a file (``FILE.sigstore.json``); params ``dist``,
``bundle``, optional ``trust_config`` and ``expected`` (``identity``, ``issuer``).

    python -I -B -m mochi_pybridge.runners.verify --protocol-fd N
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import RunnerFailure, serve_one
from mochi_pybridge.runners.channel import RunnerChannel

MAX_PROVENANCE = 16 * 1024 * 1024


def describe(publisher: Any) -> str:
    """A one-line publisher identity, e.g. ``GitHub trailofbits/pypi-attestations release.yml``."""
    data = publisher.model_dump(exclude_none=True)
    kind = data.pop("kind", "?")
    if kind == "GitHub":
        return f"GitHub {data.get('repository')} {data.get('workflow')}" + (
            f" environment={data['environment']}" if data.get("environment") else ""
        )
    if kind == "GitLab":
        return f"GitLab {data.get('repository')} {data.get('workflow_filepath')}"
    return f"{kind} " + " ".join(f"{k}={v}" for k, v in sorted(data.items()))


def _read_capped(path: Path) -> bytes:
    """An attestation, provenance or bundle file: at most ``MAX_PROVENANCE`` bytes read."""
    with path.open("rb") as f:
        raw = f.read(MAX_PROVENANCE + 1)
    if len(raw) > MAX_PROVENANCE:
        raise RunnerFailure("integrity", f"{path.name} is larger than {MAX_PROVENANCE} bytes")
    return raw


def _verifier(trust_config: str | None) -> Any:
    from sigstore.models import ClientTrustConfig
    from sigstore.verify import Verifier

    if not trust_config:
        return Verifier.production(offline=True)
    raw = Path(trust_config).read_text()
    return Verifier(trusted_root=ClientTrustConfig.from_json(raw).trusted_root)


def _check(verifier: Any, item: Any, publisher: Any, dist: Any) -> str:
    """What ``Attestation.verify`` checks, with a verifier of our choosing (pypi-attestations
    offers only the production and staging roots): the DSSE signature, certificate and log
    entry under the publisher's policy, then one subject naming this file with its digest, and
    a known predicate type. Returns the predicate type."""
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
    from pypi_attestations import AttestationType

    kind, payload = verifier.verify_dsse(item.to_bundle(), publisher._as_policy())
    if kind != "application/vnd.in-toto+json":
        raise ValueError(f"expected an in-toto statement, got {kind}")
    statement = json.loads(payload)
    subjects = statement.get("subject") or []
    if len(subjects) != 1:
        raise ValueError("the statement must name exactly one subject")

    def parsed(name: str) -> tuple[Any, ...]:
        if name.endswith(".whl"):
            n, v, b, t = parse_wheel_filename(name)
            return (canonicalize_name(n), v, b, t)
        n, v = parse_sdist_filename(name)
        return (canonicalize_name(n), v)

    if parsed(str(subjects[0].get("name", ""))) != parsed(dist.name):
        raise ValueError(f"the statement is about {subjects[0].get('name')!r}, not {dist.name}")
    if (subjects[0].get("digest") or {}).get("sha256") != dist.digest:
        raise ValueError("the statement's sha256 does not match the file")
    return AttestationType(statement.get("predicateType")).value


def _publisher_from_certificate(item: Any) -> Any:
    """For a bare attestation (no provenance naming the publisher): the Trusted Publisher its
    Fulcio certificate claims. Verification then proves the claims are signed; ``--publisher``
    decides whether they are the expected ones."""
    from pypi_attestations import GitHubPublisher, GitLabPublisher, GooglePublisher

    claims = item.certificate_claims
    issuer = claims.get("1.3.6.1.4.1.57264.1.8", "")
    source = claims.get("1.3.6.1.4.1.57264.1.12", "")
    config = claims.get("1.3.6.1.4.1.57264.1.18", "").split("@", 1)[0]
    if issuer == "https://token.actions.githubusercontent.com":
        return GitHubPublisher(
            repository=source.removeprefix("https://github.com/"),
            workflow=config.rsplit("/", 1)[-1],
        )
    if issuer == "https://gitlab.com":
        repository = source.removeprefix("https://gitlab.com/")
        return GitLabPublisher(
            repository=repository,
            workflow_filepath=config.removeprefix(f"https://gitlab.com/{repository}//"),
        )
    if issuer == "https://accounts.google.com":
        from cryptography import x509

        cert = x509.load_der_x509_certificate(item.verification_material.certificate)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return GooglePublisher(email=san.get_values_for_type(x509.RFC822Name)[0])
    raise RunnerFailure("integrity", f"attestation from an unknown publisher kind ({issuer!r})")


def attestation(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    from pypi_attestations import Attestation, AttestationBundle, Distribution, Provenance

    params = request.params
    dist_path = Path(params["dist"])
    raw = _read_capped(Path(params["provenance"]))
    try:
        dist = Distribution.from_file(dist_path)
        if params.get("bare"):
            item = Attestation.model_validate_json(raw)
            bundles = [
                AttestationBundle(publisher=_publisher_from_certificate(item), attestations=[item])
            ]
        else:
            bundles = Provenance.model_validate_json(raw).attestation_bundles
        verifier = _verifier(params.get("trust_config"))
    except RunnerFailure:
        raise
    except Exception as exc:  # pydantic, packaging and sigstore errors alike: malformed input
        raise RunnerFailure(
            "integrity", f"malformed attestation, trust configuration or distribution: {exc}"[:2000]
        ) from None
    expected: Mapping[str, Any] = params.get("expected") or {}
    identities, predicates = [], []
    for bundle in bundles:
        publisher = bundle.publisher
        claimed = publisher.model_dump(exclude_none=True)
        mismatch = {k: (claimed.get(k), v) for k, v in expected.items() if claimed.get(k) != v}
        if mismatch:
            raise RunnerFailure(
                "integrity",
                f"publisher identity does not match: {describe(publisher)}; expected "
                + ", ".join(f"{k}={v[1]!r} (got {v[0]!r})" for k, v in mismatch.items()),
            )
        for item in bundle.attestations:
            channel.progress(request.id, f"verifying attestation by {describe(publisher)}")
            try:
                predicates.append(_check(verifier, item, publisher, dist))
            except Exception as exc:
                raise RunnerFailure(
                    "integrity", f"attestation does not verify for {dist_path.name}: {exc}"[:2000]
                ) from None
        identities.append(describe(publisher))
    if not predicates:
        raise RunnerFailure("integrity", "the provenance holds no attestation")
    return {"identities": sorted(set(identities)), "predicates": sorted(set(predicates))}


def _certificate_identity(cert: Any) -> tuple[str, str]:
    """(identity, OIDC issuer) a Fulcio certificate was issued to."""
    from cryptography import x509
    from pyasn1.codec.der.decoder import decode as der_decode  # type: ignore[import-untyped]
    from pyasn1.type.char import UTF8String  # type: ignore[import-untyped]

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.UniformResourceIdentifier) + san.get_values_for_type(
        x509.RFC822Name
    )
    issuer = ""
    # The v2 issuer extension is a DER UTF8String; the legacy v1 one holds the bare bytes.
    for oid, v2 in (("1.3.6.1.4.1.57264.1.8", True), ("1.3.6.1.4.1.57264.1.1", False)):
        try:
            raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value
        except x509.ExtensionNotFound:
            continue
        value = bytes(der_decode(raw, UTF8String)[0]) if v2 else raw
        issuer = value.decode("utf-8", "replace")
        break
    return (names[0] if names else ""), issuer


def bundle(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    """A Sigstore bundle (``FILE.sigstore.json``, as ``sigstore sign`` writes) over a file."""
    from sigstore.models import Bundle
    from sigstore.verify import policy

    params = request.params
    dist_path = Path(params["dist"])
    raw = _read_capped(Path(params["bundle"]))
    try:
        parsed = Bundle.from_json(raw)
        identity, issuer = _certificate_identity(parsed.signing_certificate)
        verifier = _verifier(params.get("trust_config"))
    except Exception as exc:
        raise RunnerFailure("integrity", f"malformed bundle: {exc}"[:2000]) from None
    claimed = {"identity": identity, "issuer": issuer}
    expected: Mapping[str, Any] = params.get("expected") or {}
    mismatch = [f"{k}={v!r} (got {claimed.get(k)!r})" for k, v in expected.items()
                if claimed.get(k) != v]  # fmt: skip
    if mismatch:
        raise RunnerFailure(
            "integrity",
            f"signer does not match: {identity} ({issuer}); expected " + ", ".join(mismatch),
        )
    channel.progress(request.id, f"verifying the bundle signed by {identity}")
    try:
        verifier.verify_artifact(
            dist_path.read_bytes(), parsed, policy.Identity(identity=identity, issuer=issuer)
        )
    except Exception as exc:
        raise RunnerFailure(
            "integrity", f"bundle does not verify for {dist_path.name}: {exc}"[:2000]
        ) from None
    return {"identities": [f"{identity} ({issuer})"], "predicates": []}


def main() -> int:
    return serve_one({"attestation": attestation, "bundle": bundle})


if __name__ == "__main__":
    raise SystemExit(main())
