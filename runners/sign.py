"""The sign runner: keyless Sigstore signing of built distributions, one PEP 740 attestation
(``https://docs.pypi.org/attestations/publish/v1``) per file, with sigstore-python and
pypi-attestations.

It runs under the sign policy: no network route. Its only way out is the kernel's allow-listing
CONNECT proxy, a Unix socket bound into the sandbox; a loopback relay inside the sandbox's own
network namespace makes that socket an ordinary ``HTTPS_PROXY`` for ``requests``. TLS is end to
end between this runner and the signing services. Once its code is loaded, ``sign`` also
forbids itself to execute programs (a late seccomp filter).

Method ``sign``: params ``token_fd`` (a pipe holding the OIDC identity token: never the
environment or argv), ``trust_config`` (client trust configuration JSON: trusted root + signing
config), ``proxy`` (the proxy socket's path), ``files`` (distribution paths, named as they will
be published). Writes ``NAME.publish.attestation`` per file into ``out``; result: the signing
identity and issuer.

Method ``trust``: refreshes Sigstore's production trust configuration through TUF (the proxy
then allows only the TUF repository) and writes it to ``out/trust_config.json``.

    python -I -B -m mochi_pybridge.runners.sign --protocol-fd N
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mochi_pybridge.protocol import Request
from mochi_pybridge.runners.base import RunnerFailure, serve_one
from mochi_pybridge.runners.channel import RunnerChannel
from mochi_pybridge.runners.relay import use_proxy

MAX_TOKEN = 16 * 1024
MAX_TRUST_CONFIG = 1024 * 1024


def _read_token(fd: int) -> str:
    with os.fdopen(fd, "rb", closefd=True) as pipe:
        raw = pipe.read(MAX_TOKEN + 1)
    if len(raw) > MAX_TOKEN:
        raise RunnerFailure("identity", "the identity token is larger than 16 KiB")
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise RunnerFailure("identity", "the identity token is not ASCII text") from None


def sign(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    params = request.params
    token = _read_token(int(params["token_fd"]))
    use_proxy(str(params["proxy"]))
    from pypi_attestations import Attestation, AttestationError, Distribution
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityError, IdentityToken
    from sigstore.sign import SigningContext

    from mochi_pybridge.sandbox.seccomp import deny_exec

    deny_exec()  # everything signing needs is loaded; it never runs a program

    try:
        identity = IdentityToken(token)
    except IdentityError as exc:
        raise RunnerFailure("identity", f"the OIDC identity token is not usable: {exc}") from None
    raw = Path(params["trust_config"]).read_bytes()[: MAX_TRUST_CONFIG + 1]
    if len(raw) > MAX_TRUST_CONFIG:
        raise RunnerFailure("config", "the trust configuration is larger than 1 MiB")
    try:
        context = SigningContext.from_trust_config(ClientTrustConfig.from_json(raw.decode()))
    except Exception as exc:  # betterproto, pydantic and sigstore errors alike
        raise RunnerFailure("config", f"unusable Sigstore trust configuration: {exc}") from None
    out = Path(params["out"])
    written = []
    try:
        with context.signer(identity, cache=True) as signer:
            for index, name in enumerate(params["files"]):
                path = Path(name)
                channel.progress(request.id, f"signing {path.name}", index, len(params["files"]))
                attestation = Attestation.sign(signer, Distribution.from_file(path))
                target = out / f"{path.name}.publish.attestation"
                target.write_text(attestation.model_dump_json())
                written.append(target.name)
    except AttestationError as exc:
        raise RunnerFailure("signing", f"signing failed: {exc}") from None
    except Exception as exc:  # network and service errors from sigstore-python and requests
        raise RunnerFailure(
            "network", f"signing failed: {type(exc).__name__}: {exc}"[:2000]
        ) from None
    return {"identity": identity.identity, "issuer": identity.issuer, "attestations": written}


def trust(request: Request, channel: RunnerChannel) -> Mapping[str, Any]:
    use_proxy(str(request.params["proxy"]))
    from sigstore.models import ClientTrustConfig

    channel.progress(request.id, "refreshing the Sigstore trust root (TUF)")
    try:
        config = ClientTrustConfig.production()
    except Exception as exc:
        raise RunnerFailure(
            "network", f"cannot refresh the Sigstore trust root: {type(exc).__name__}: {exc}"
        ) from None
    # sigstore-python exposes no serialiser for a trust config; its protobuf model has one.
    text = config._inner.to_json()
    (Path(request.params["out"]) / "trust_config.json").write_text(text)
    return {"trust_config": "trust_config.json"}


def main() -> int:
    return serve_one({"sign": sign, "trust": trust})


if __name__ == "__main__":
    raise SystemExit(main())
