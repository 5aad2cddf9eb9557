"""PEP 740 provenance during `lock`, with real published material.

The ``pypi-attestations`` sdist on PyPI ships, in its test assets, a real published wheel with
its real ``.provenance`` (signed by a CircleCI trusted publisher). The tests download that sdist
once, serve the wheel and its provenance from the loopback index, and lock against it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mochi_pybridge.kernel.lockfile import parse_lock

from ..support.index import IndexState, serve_index
from ..support.wheels import build_wheel
from .test_lock import cli, write_project

pytestmark = pytest.mark.network

SDIST = "pypi-attestations==0.0.30"
WHEEL = "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl"
SDIST_ASSET = "pypi_attestations-0.0.19.tar.gz"
ASSETS = (WHEEL, WHEEL + ".provenance", SDIST_ASSET, SDIST_ASSET + ".provenance")


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("pypi-attestations")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
         "--quiet", "-d", str(where), SDIST],
        check=True, capture_output=True,
    )  # fmt: skip
    (sdist,) = where.glob("pypi_attestations-*.tar.gz")
    out = where / "assets"
    out.mkdir()
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if "/test/assets/" in member.name and name in ASSETS:
                data = tar.extractfile(member)
                assert data is not None
                (out / name).write_bytes(data.read())
    assert (out / WHEEL).is_file()
    assert (out / (WHEEL + ".provenance")).is_file()
    return out


@pytest.fixture
def attested_index(tmp_path: Path, assets: Path) -> Iterator[tuple[str, IndexState]]:
    files = tmp_path / "files"
    files.mkdir()
    for name in (WHEEL, WHEEL + ".provenance"):
        (files / name).write_bytes((assets / name).read_bytes())
    build_wheel(files, "plain", "1.0")
    with serve_index(files) as served:
        yield served


DEP = 'circleci-sign-publish-example = "==0.0.1.dev137"'


def test_lock_verifies_real_provenance_and_records_the_publisher(
    tmp_path: Path, attested_index: tuple[str, IndexState]
) -> None:
    url, _ = attested_index
    project = tmp_path / "proj"
    write_project(project, url, DEP)
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 0, done.stderr
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    (pkg,) = lock.packages
    assert pkg.attestation == "verified"
    assert pkg.attestation_identity is not None
    assert pkg.attestation_identity.startswith("CircleCI")
    assert "CircleCI-Public/sign-and-publish-examples" in pkg.attestation_identity


def test_lock_tampered_provenance_exits_6(
    tmp_path: Path, attested_index: tuple[str, IndexState]
) -> None:
    url, state = attested_index
    prov_path = state.root / (WHEEL + ".provenance")
    prov = json.loads(prov_path.read_text())
    envelope = prov["attestation_bundles"][0]["attestations"][0]["envelope"]
    sig = envelope["signature"]
    envelope["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    prov_path.write_text(json.dumps(prov))
    project = tmp_path / "proj"
    write_project(project, url, DEP)
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 6, done.stderr
    assert "attestation" in done.stderr
    assert not (project / "mochi.lock").exists()


def test_lock_provenance_for_other_bytes_exits_6(
    tmp_path: Path, attested_index: tuple[str, IndexState]
) -> None:
    """A wheel with the published name but other contents: its hash is the index's own, but
    the attestation names the digest of the real file."""
    url, state = attested_index
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    fake = build_wheel(fake_dir, "circleci-sign-publish-example", "0.0.1.dev137")
    (state.root / WHEEL).write_bytes(fake.read_bytes())
    project = tmp_path / "proj"
    write_project(project, url, DEP)
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 6, done.stderr
    assert not (project / "mochi.lock").exists()


def test_require_attestations_refuses_a_package_without_one(
    tmp_path: Path, attested_index: tuple[str, IndexState]
) -> None:
    url, _ = attested_index
    project = tmp_path / "proj"
    write_project(project, url, 'plain = "*"')
    manifest = project / "mochi.toml"
    manifest.write_text(
        manifest.read_text().replace("[python]\n", "[python]\nrequire-attestations = true\n")
    )
    done = cli(project, tmp_path / "cache", "lock")
    assert done.returncode == 1
    assert "require-attestations = true" in done.stderr
    assert "plain" in done.stderr


def verify_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mochi_pybridge",
            "--cache-dir",
            str(tmp_path / "cache"),
            "verify",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_verify_accepts_real_attestations_and_shows_the_publisher(
    tmp_path: Path, assets: Path
) -> None:
    done = verify_cli(tmp_path, str(assets / WHEEL), str(assets / SDIST_ASSET))
    assert done.returncode == 0, done.stderr
    assert (
        f"verified {SDIST_ASSET}: published by GitHub trailofbits/pypi-attestations release.yml"
        in done.stdout
    )
    assert f"verified {WHEEL}: published by CircleCI" in done.stdout
    pinned = verify_cli(tmp_path, "--publisher", "repository=trailofbits/pypi-attestations",
                        str(assets / SDIST_ASSET))  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr


def test_verify_rejects_a_tampered_file_and_a_wrong_publisher(tmp_path: Path, assets: Path) -> None:
    tampered = tmp_path / SDIST_ASSET
    data = bytearray((assets / SDIST_ASSET).read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    (tmp_path / (SDIST_ASSET + ".provenance")).write_bytes(
        (assets / (SDIST_ASSET + ".provenance")).read_bytes()
    )
    done = verify_cli(tmp_path, str(tampered))
    assert done.returncode == 6
    assert f"FAILED {SDIST_ASSET}" in done.stderr
    wrong = verify_cli(tmp_path, "--publisher", "repository=evil/fork", str(assets / SDIST_ASSET))
    assert wrong.returncode == 6
    assert "publisher identity does not match" in wrong.stderr
