"""The sign stage as the kernel runs it (through ``Pipeline._run``, like every stage): the
sign runner in its sandbox, the OIDC token on a pipe, and the allow-listing egress proxy
(``kernel/egress``) allowing only the signing services as its only way out.

The allow list is derived at run time from the Sigstore signing configuration in use (its
Fulcio, Rekor and timestamp-authority URLs), never hard-coded: ``--trust-config FILE`` names
one (any Sigstore instance), otherwise a first sandboxed stage refreshes the production
configuration through TUF with only the TUF repository allowed. The kernel parses that JSON for
URLs only; certificates and signatures are the runner's business.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mochi_pybridge.kernel.egress import allow_list
from mochi_pybridge.kernel.errors import PybridgeError, StageFailed
from mochi_pybridge.kernel.lifecycle import StageId
from mochi_pybridge.kernel.pipeline import Pipeline
from mochi_pybridge.sandbox.intake import IntakeRules
from mochi_pybridge.sandbox.policy import StageKind

SIGN_RUNNER = "mochi_pybridge.runners.sign"
TUF_URL = "https://tuf-repo-cdn.sigstore.dev"
MAX_TRUST_CONFIG = 1024 * 1024
MAX_TOKEN = 16 * 1024


class SigningError(PybridgeError):
    pass


@dataclass(frozen=True)
class Signed:
    identity: str
    issuer: str
    attestations: tuple[Path, ...]  # FILE.publish.attestation, beside each FILE


def signing_urls(trust_config: bytes) -> list[str]:
    """The service URLs of a client trust configuration's signing config (Fulcio, Rekor,
    timestamp authorities): what the sign stage may reach."""
    if len(trust_config) > MAX_TRUST_CONFIG:
        raise SigningError("the Sigstore trust configuration is larger than 1 MiB")
    try:
        data = json.loads(trust_config)
        config = data["signingConfig"]
        urls = [
            str(service["url"])
            for key in ("caUrls", "rekorTlogUrls", "tsaUrls")
            for service in config.get(key, [])
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SigningError(
            f"not a Sigstore client trust configuration (trusted root + signing config): {exc}"
        ) from None
    if not urls:
        raise SigningError("the Sigstore signing configuration names no services")
    return urls


async def production_trust_config(pipeline: Pipeline) -> bytes:
    """Sigstore's production trust configuration, refreshed through TUF in the sign sandbox."""
    _, out = await pipeline._run(
        StageId("sign", "trust root"),
        StageKind.SIGN,
        "trust",
        {},
        IntakeRules(suffixes=frozenset({".json"}), max_files=1, max_file_size=MAX_TRUST_CONFIG),
        module=SIGN_RUNNER,
        egress=allow_list([TUF_URL]),
    )
    try:
        return (out / "trust_config.json").read_bytes()
    finally:
        shutil.rmtree(out, ignore_errors=True)


async def sign_distributions(
    files: Sequence[Path],
    token: str,
    trust_config: bytes,
    pipeline: Pipeline,
) -> Signed:
    """Sign each file; write ``FILE.publish.attestation`` beside it (the name twine and the
    PyPA publish action upload)."""
    if len(token.encode()) > MAX_TOKEN:
        raise SigningError("the identity token is larger than 16 KiB")
    urls = signing_urls(trust_config)
    plain = [url for url in urls if not url.startswith("https://")]
    if plain:
        raise SigningError(f"signing service URLs must be https://, not {plain[0]!r}")
    try:
        allowed = allow_list(urls)
    except ValueError as exc:
        raise SigningError(str(exc)) from None
    staging = pipeline.work / uuid.uuid4().hex
    staging.mkdir(parents=True)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, token.encode())  # fits the pipe buffer: MAX_TOKEN < 64 KiB
        os.close(write_end)
        write_end = -1
        for path in files:
            shutil.copyfile(path, staging / path.name)
        (staging / "trust_config.json").write_bytes(trust_config)
        value, out = await pipeline._run(
            StageId("sign", ", ".join(path.name for path in files)),
            StageKind.SIGN,
            "sign",
            {
                "token_fd": read_end,
                "trust_config": "{in:dist}/trust_config.json",
                "files": [f"{{in:dist}}/{path.name}" for path in files],
            },
            IntakeRules(
                suffixes=frozenset({".attestation"}),
                max_files=len(files),
                max_file_size=MAX_TRUST_CONFIG,
            ),
            module=SIGN_RUNNER,
            inputs={"dist": staging},
            egress=allowed,
            extra_fds=[read_end],
        )
    except StageFailed as exc:
        raise SigningError(f"signing failed: {exc.diagnostics()}") from None
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        shutil.rmtree(staging, ignore_errors=True)
    written = []
    try:
        for path in files:
            produced = out / f"{path.name}.publish.attestation"
            json.loads(produced.read_bytes())  # the upload API needs JSON; the rest is PyPI's
            target = path.with_name(produced.name)
            shutil.copyfile(produced, target)
            written.append(target)
    except (OSError, ValueError) as exc:
        raise SigningError(f"the sign stage produced no usable attestation: {exc}") from None
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return Signed(
        identity=str(value.get("identity", "")),
        issuer=str(value.get("issuer", "")),
        attestations=tuple(written),
    )
