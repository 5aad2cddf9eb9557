"""``publish`` and ``verify`` (SPEC §8): build, sign (Sigstore, PEP 740), upload with Trusted
Publishing; verify attestations offline.

The order is fixed: validate metadata, build, sign (``kernel/sign``: the sign runner behind the
allow-listing proxy), then upload each file with its attestation. ``--dry-run`` stops before
the upload; ``--no-attestations`` skips signing, knowingly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from mochi_pybridge.kernel.errors import ExitCode, IntegrityError, PybridgeError, StageFailed
from mochi_pybridge.kernel.events import make_sink
from mochi_pybridge.kernel.lifecycle import StageId
from mochi_pybridge.kernel.manifest import DEFAULT_INDEX, Index, Manifest, load_manifest
from mochi_pybridge.kernel.publish_build import build_sdist, build_wheel, validate
from mochi_pybridge.kernel.publish_upload import (
    TARGETS,
    NoOIDC,
    identity_token,
    mint_token,
    upload,
    upload_fields,
)
from mochi_pybridge.sandbox.intake import IntakeRules
from mochi_pybridge.sandbox.policy import StageKind

if TYPE_CHECKING:  # imported when a stage runs: `publish --no-attestations` never needs it
    from mochi_pybridge.kernel.pipeline import Pipeline

MINT = {
    "pypi": "https://pypi.org/_/oidc/mint-token",
    "testpypi": "https://test.pypi.org/_/oidc/mint-token",
}


def cmd_publish(args: argparse.Namespace) -> int:
    project = args.project.resolve()
    manifest = load_manifest(project)
    meta = validate(manifest, project)
    dist = project / "dist"
    dist.mkdir(exist_ok=True)
    files = [build_sdist(meta, project, dist), build_wheel(meta, dist)]
    for path in files:
        print(f"built {path}", file=sys.stderr)
    attestations: dict[Path, list[Any]] = {}
    if not args.no_attestations:
        trust_config = _read_trust_config(args.trust_config) if args.trust_config else None
        attestations = trio.run(_sign, args, files, trust_config)
    target = TARGETS.get(args.to, args.to)
    if args.dry_run:
        print(
            f"dry run: would upload {', '.join(p.name for p in files)} to {target}", file=sys.stderr
        )
        return int(ExitCode.OK)
    token = None
    if args.to in TARGETS:
        oidc = identity_token(args.identity_token, audience=args.to)
        if oidc is None:
            raise NoOIDC("no OIDC identity")
        token = mint_token(MINT[args.to], oidc)
    elif args.mint_url:
        oidc = identity_token(
            args.identity_token, audience=urllib.parse.urlsplit(args.mint_url).netloc
        )
        if oidc is None:
            raise NoOIDC("no OIDC identity")
        token = mint_token(args.mint_url, oidc)
    fields_meta = {
        "name": meta.name,
        "version": meta.version,
        "summary": meta.summary,
        "license_expression": meta.license_expression,
        "requires_python": meta.requires_python,
    }
    for path in files:
        attempts = upload(
            target,
            path,
            upload_fields(path, fields_meta, attestations.get(path)),
            token,
            log=lambda text: print(text, file=sys.stderr),
        )
        print(
            f"uploaded {path.name} to {target}"
            + (f" ({attempts} attempts)" if attempts > 1 else ""),
            file=sys.stderr,
        )
    return int(ExitCode.OK)


def _read_trust_config(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise PybridgeError(f"cannot read the trust configuration {name}: {exc.strerror}") from None


async def _sign(
    args: argparse.Namespace, files: list[Path], trust_config: bytes | None
) -> dict[Path, list[Any]]:
    """Sign every file; their attestations, as the upload API takes them."""
    from mochi_pybridge.kernel.sign import production_trust_config, sign_distributions

    token = identity_token(args.identity_token, audience="sigstore")
    if token is None:
        raise NoOIDC("no OIDC identity for signing")
    pipeline = _stage_runner(args)
    if trust_config is None:
        trust_config = await production_trust_config(pipeline)
    signed = await sign_distributions(files, token, trust_config, pipeline)
    for path in signed.attestations:
        print(f"signed {path.name} as {signed.identity} ({signed.issuer})", file=sys.stderr)
    return {
        path.with_name(path.name.removesuffix(".publish.attestation")): [
            json.loads(path.read_bytes())
        ]
        for path in signed.attestations
    }


async def _verify_one(args: argparse.Namespace, path: Path, expected: dict[str, str]) -> str:
    from mochi_pybridge.kernel.pipeline import VERIFY_RUNNER

    # What the index serves, what publish writes, what `sigstore sign` writes: first found.
    kinds = (".provenance", ".publish.attestation", ".sigstore.json")
    found = [
        path.with_name(path.name + k) for k in kinds if path.with_name(path.name + k).is_file()
    ]
    if not found:
        expected_names = ", ".join(path.name + k for k in kinds)
        raise IntegrityError(f"{path}: nothing to verify beside it (one of {expected_names})")
    provenance = found[0]
    method = "bundle" if provenance.name.endswith(".sigstore.json") else "attestation"
    pipeline = _stage_runner(args)
    staging = pipeline.work / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        shutil.copyfile(path, staging / path.name)
        shutil.copyfile(provenance, staging / provenance.name)
        if args.trust_config:
            (staging / "trust_config.json").write_bytes(_read_trust_config(args.trust_config))
        try:
            value, out = await pipeline._run(
                StageId("verify", path.name),
                StageKind.SYNTHESIS,
                method,
                {
                    "dist": f"{{in:dist}}/{path.name}",
                    "provenance": f"{{in:dist}}/{provenance.name}",
                    "bundle": f"{{in:dist}}/{provenance.name}",
                    "bare": provenance.name.endswith(".publish.attestation"),
                    "trust_config": "{in:dist}/trust_config.json" if args.trust_config else None,
                    "expected": expected,
                },
                IntakeRules(suffixes=frozenset(), max_files=0),
                module=VERIFY_RUNNER,
                inputs={"dist": staging},
            )
        except StageFailed as exc:
            raise IntegrityError(f"{path.name}: {exc.diagnostics()}") from None
        shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return "; ".join(value.get("identities", []))


def _stage_runner(args: argparse.Namespace) -> Pipeline:
    """What runs the sign and verify stages: a pipeline over a manifest with no dependencies
    (publish and verify lock nothing), sharing the cache and the event sink."""
    from mochi_pybridge.kernel.pipeline import Pipeline

    return Pipeline(
        _bare_manifest(args.project.resolve()),
        args.cache_dir,
        make_sink(as_json=args.json),
        unsafe_no_sandbox=args.unsafe_no_sandbox,
    )


def _bare_manifest(project: Path) -> Manifest:
    return Manifest(
        path=project / "mochi.toml",
        name="verify",
        version="0",
        dependencies=(),
        requires_python="",
        indexes=(Index(DEFAULT_INDEX),),
    )


def cmd_verify(args: argparse.Namespace) -> int:
    expected = {}
    for item in args.publisher or []:
        key, _, value = item.partition("=")
        if not value:
            raise PybridgeError(
                f"--publisher takes KEY=VALUE (e.g. repository=org/name), not {item!r}"
            )
        expected[key] = value
    failures = 0
    for name in args.files:
        path = Path(name)
        try:
            identity = trio.run(_verify_one, args, path, expected)
        except IntegrityError as exc:
            print(f"FAILED {path.name}: {exc.diagnostics()}", file=sys.stderr)
            failures += 1
            continue
        print(f"verified {path.name}: published by {identity}")
    return int(ExitCode.INTEGRITY) if failures else int(ExitCode.OK)
