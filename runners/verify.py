"""The verify runner: checks PEP 740 attestations (a PyPI ``.provenance`` file) against a
distribution, offline, with the Sigstore trust root bundled in sigstore-python. No network:
it runs under the synthesis policy. Parsing hostile JSON and certificates happens here, not in
the kernel.

Method ``attestation``: params ``dist`` (path of the distribution file, named as published),
``provenance`` (path of its provenance JSON), optional ``expected`` publisher fields that must
match. Result: the publisher identity and the predicate types verified.

    python -I -B -m mochi_pybridge.runners.verify --protocol-fd N
"""

from __future__ import annotations

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


def attestation(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    from pypi_attestations import Distribution, Provenance

    params = request.params
    dist_path = Path(params["dist"])
    raw = Path(params["provenance"]).read_bytes()
    if len(raw) > MAX_PROVENANCE:
        raise RunnerFailure("integrity", "provenance file is too large")
    try:
        provenance = Provenance.model_validate_json(raw)
        dist = Distribution.from_file(dist_path)
    except Exception as exc:  # pydantic and packaging errors alike: the file is malformed
        raise RunnerFailure(
            "integrity", f"malformed provenance or distribution: {exc}"[:2000]
        ) from None
    expected: Mapping[str, Any] = params.get("expected") or {}
    identities, predicates = [], []
    for bundle in provenance.attestation_bundles:
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
                predicate_type, _ = item.verify(publisher, dist, offline=True)
            except Exception as exc:
                raise RunnerFailure(
                    "integrity", f"attestation does not verify for {dist_path.name}: {exc}"[:2000]
                ) from None
            predicates.append(predicate_type)
        identities.append(describe(publisher))
    if not predicates:
        raise RunnerFailure("integrity", "the provenance holds no attestation")
    return {"identities": sorted(set(identities)), "predicates": sorted(set(predicates))}


def main() -> int:
    return serve_one({"attestation": attestation})


if __name__ == "__main__":
    raise SystemExit(main())
