"""`lock` and friends end to end against a real package index on loopback.

Each test runs the real CLI in a subprocess: real uv in the real fetch sandbox, real
downloads over HTTP, real hashing. Nothing is mocked.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mochi_pybridge.kernel.lockfile import parse_lock

from ..support.index import IndexState, serve_index
from ..support.wheels import build_wheel

CLI = [sys.executable, "-m", "mochi_pybridge"]


def cli(
    project: Path, cache: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--project", str(project), "--cache-dir", str(cache), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def write_project(project: Path, index_url: str, deps: str, imports: str = "") -> None:
    project.mkdir(exist_ok=True)
    (project / "mochi.toml").write_text(
        f'[package]\nname = "demo"\nversion = "0.1.0"\n\n[python-dependencies]\n{deps}\n'
        f'[python]\nrequires-python = ">=3.11"\nindexes = [{{ url = "{index_url}" }}]\n'
    )
    (project / "main.mochi").write_text(imports or "// no imports\n")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[str, IndexState]]:
    files = tmp_path / "index-files"
    files.mkdir()
    build_wheel(
        files,
        "alpha",
        "1.0",
        requires=("beta>=1", "gamma; extra == 'fast'", "delta; python_version < '3'"),
        extras=("fast",),
    )
    build_wheel(files, "alpha", "2.0", requires=("beta>=1",))
    build_wheel(files, "beta", "1.0")
    build_wheel(files, "beta", "1.5")
    build_wheel(files, "gamma", "0.3")
    build_wheel(files, "delta", "9.9")
    with serve_index(files) as served:
        yield served


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_lock_resolves_transitive_deps_extras_and_markers(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = { version = "<2", extras = ["fast"] }',
                  'import python "alpha" as a\n')  # fmt: skip
    done = cli(project, cache, "lock")
    assert done.returncode == 0, done.stderr
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    versions = {p.name: p.version for p in lock.packages}
    assert versions == {"alpha": "1.0", "beta": "1.5", "gamma": "0.3"}  # no delta: marker false
    alpha = next(p for p in lock.packages if p.name == "alpha")
    assert alpha.direct and alpha.alias == "a" and alpha.module == "alpha"
    assert "beta>=1" in alpha.dependencies
    beta = next(p for p in lock.packages if p.name == "beta")
    assert not beta.direct and beta.alias is None
    for pkg in lock.packages:
        assert pkg.wheel_sha256 == pkg.pypi_simple_sha256
        assert pkg.attestation == "absent"
    assert (project / "pylock.toml").is_file()


def test_lock_twice_starts_no_runner_and_check_passes(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = "*"')
    assert cli(project, cache, "lock").returncode == 0
    before = (project / "mochi.lock").read_bytes()
    served = len(state.requests)
    again = cli(project, cache, "lock")
    assert again.returncode == 0
    assert "0 runner(s) started" in again.stderr
    assert len(state.requests) == served  # not one request to the index
    assert (project / "mochi.lock").read_bytes() == before
    check = cli(project, cache, "lock", "--check")
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("attack", ["tampered-bytes", "wrong-advertised-hash"])
def test_lock_hash_mismatch_exits_6_and_writes_nothing(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path, attack: str
) -> None:
    url, state = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "==1.0"')
    if attack == "tampered-bytes":
        state.tamper.add("beta-1.0-py3-none-any.whl")
    else:
        state.advertise["beta-1.0-py3-none-any.whl"] = "0" * 64
    done = cli(project, cache, "lock")
    assert done.returncode == 6, done.stderr
    assert "sha256" in done.stderr
    assert not (project / "mochi.lock").exists()
    assert not (project / "pylock.toml").exists()
    assert "Traceback" not in done.stderr


def test_lock_skips_a_yanked_version(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    state.yanked["beta-1.5-py3-none-any.whl"] = "broken release"
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "*"')
    assert cli(project, cache, "lock").returncode == 0
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    assert [(p.name, p.version) for p in lock.packages] == [("beta", "1.0")]


def test_lock_sdist_only_dependency_is_a_clear_error(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    (state.root / "sdistonly-1.0.tar.gz").write_bytes(b"not really an sdist")
    project = tmp_path / "proj"
    write_project(project, url, 'sdistonly = "*"')
    done = cli(project, cache, "lock")
    assert done.returncode == 1
    assert "sdistonly" in done.stderr
    assert "never builds sdists" in done.stderr or "wheel" in done.stderr
    assert not (project / "mochi.lock").exists()


def test_lock_package_without_a_wheel_for_this_python(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    build_wheel(state.root, "oldonly", "1.0", tag="cp27-cp27mu-manylinux1_x86_64")
    project = tmp_path / "proj"
    write_project(project, url, 'oldonly = "*"')
    done = cli(project, cache, "lock")
    assert done.returncode == 1
    assert "oldonly" in done.stderr
    assert not (project / "mochi.lock").exists()


def test_lock_check_reports_each_kind_of_drift_and_writes_nothing(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "==1.0"')
    assert cli(project, cache, "lock").returncode == 0
    original = (project / "mochi.lock").read_text()

    # 1. the manifest asks for something new
    write_project(project, url, 'beta = "==1.0"\ngamma = "*"')
    done = cli(project, cache, "lock", "--check")
    assert done.returncode == 3
    assert "+ gamma 0.3 (new)" in done.stderr
    assert (project / "mochi.lock").read_text() == original

    # 2. the manifest moves a version
    write_project(project, url, 'beta = "==1.5"')
    done = cli(project, cache, "lock", "--check")
    assert done.returncode == 3
    assert "~ beta: version: '1.0' -> '1.5'" in done.stderr

    # 3. someone edited mochi.lock by hand
    write_project(project, url, 'beta = "==1.0"')
    (project / "mochi.lock").write_text(original.replace('"1.0"', '"1.0.post1"'))
    done = cli(project, cache, "lock", "--check")
    assert done.returncode == 3
    assert "version" in done.stderr
    assert "1.0.post1" in (project / "mochi.lock").read_text()

    # 4. a dependency disappeared
    (project / "mochi.lock").write_text(original)
    write_project(project, url, "")
    done = cli(project, cache, "lock", "--check")
    assert done.returncode == 3
    assert "- beta 1.0 (no longer needed)" in done.stderr


def test_kill_9_at_random_points_never_breaks_the_previous_lock(
    tmp_path: Path, index: tuple[str, IndexState]
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "==1.0"')
    assert cli(project, tmp_path / "c0", "lock").returncode == 0
    old = (project / "mochi.lock").read_bytes()
    write_project(project, url, 'alpha = "*"')
    rng = random.Random(1234)
    outcomes = set()
    for attempt in range(6):
        proc = subprocess.Popen(
            [*CLI, "--project", str(project), "--cache-dir", str(tmp_path / f"c{attempt + 1}"), "lock"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = (project / "mochi.lock").read_bytes()
        parse_lock(now.decode(), project / "mochi.lock")  # always valid
        outcomes.add("old" if now == old else "new")
        if now != old:
            # A finished lock: put the old one back and try another point.
            (project / "mochi.lock").write_bytes(old)
        leftovers = [p.name for p in project.iterdir() if p.name.startswith(".mochi.lock.")]
        assert leftovers == []
    assert "old" in outcomes


def test_pylock_installs_exactly_the_locked_versions(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = { version = "<2", extras = ["fast"] }')
    assert cli(project, cache, "lock").returncode == 0
    venv = tmp_path / "venv"
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "venv", "-q", str(venv)], check=True)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "-r", str(project / "pylock.toml")], check=True)  # fmt: skip
    frozen = subprocess.run([str(uv), "pip", "freeze", "--python", str(venv / "bin" / "python")],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert sorted(frozen) == ["alpha==1.0", "beta==1.5", "gamma==0.3"]


def test_export_pylock_rewrites_it_from_mochi_lock(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "*"')
    assert cli(project, cache, "lock").returncode == 0
    first = (project / "pylock.toml").read_text()
    (project / "pylock.toml").unlink()
    assert cli(project, cache, "export", "pylock").returncode == 0
    assert (project / "pylock.toml").read_text() == first


def test_update_moves_to_newer_versions_and_reports_them(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "*"')
    state.yanked["beta-1.5-py3-none-any.whl"] = "hidden for now"
    assert cli(project, cache, "lock").returncode == 0
    del state.yanked["beta-1.5-py3-none-any.whl"]
    done = cli(project, cache, "update")
    assert done.returncode == 0, done.stderr
    assert "beta 1.0 -> 1.5" in done.stderr
    assert '"1.5"' in (project / "mochi.lock").read_text()


def test_add_keeps_comments_and_locks(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, '# pinned on purpose\nbeta = "==1.0"  # keep me')
    done = cli(project, cache, "add", "gamma>=0.1")
    assert done.returncode == 0, done.stderr
    text = (project / "mochi.toml").read_text()
    assert "# pinned on purpose" in text
    assert "# keep me" in text
    assert 'gamma = ">=0.1"' in text
    assert "gamma" in (project / "mochi.lock").read_text()


def test_second_lock_with_no_wait_fails_clearly(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    import fcntl

    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "*"')
    with open(project / ".mochi-pybridge.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        done = cli(project, cache, "lock", "--no-wait")
    assert done.returncode == 1
    assert "another mochi-pybridge is working" in done.stderr


def test_two_projects_lock_concurrently_on_one_cache(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    procs = []
    for n in range(2):
        project = tmp_path / f"proj{n}"
        write_project(project, url, 'alpha = "*"')
        procs.append(subprocess.Popen(
            [*CLI, "--project", str(project), "--cache-dir", str(cache), "lock"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert (tmp_path / "proj0" / "mochi.lock").read_text() == (
        tmp_path / "proj1" / "mochi.lock"
    ).read_text()


def test_corrupted_cache_blob_is_detected_and_refetched(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "==1.0"')
    assert cli(project, cache, "lock").returncode == 0
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    blob = (
        cache
        / "store"
        / "blobs"
        / lock.packages[0].wheel_blake3[:2]
        / lock.packages[0].wheel_blake3[2:]
    )
    blob.write_bytes(b"bit rot")
    done = cli(project, cache, "lock")
    assert done.returncode == 0, done.stderr
    assert "1 runner(s) started" in done.stderr  # the fetch ran again
    assert blob.read_bytes() != b"bit rot"


@pytest.mark.parametrize("after", [0.3, 0.6, 1.0], ids=["early", "mid", "late"])
def test_sigint_stops_lock_and_leaves_no_process(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path, after: float
) -> None:
    """Ctrl-C at different phases of a lock (resolve, batched fetch, bindings)."""
    url, _ = index
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = "*"')
    proc = subprocess.Popen(
        [*CLI, "--project", str(project), "--cache-dir", str(cache), "lock"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    # A lock that ignored SIGINT would hang here: communicate's timeout fails the test.
    _, err = proc.communicate(timeout=15)
    # 130, or death by SIGINT (-2 here), which a shell reports as 130 too: Python ends that way
    # when the interrupt lands on its way out, after our handler has printed "interrupted".
    assert proc.returncode in (0, 130, -signal.SIGINT), err
    children = subprocess.run(
        ["pgrep", "-f", str(cache)], capture_output=True, text=True, check=False
    ).stdout
    assert children.strip() == ""
    if (project / "mochi.lock").exists():
        parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")


def test_lock_against_an_html_only_pep503_index(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    state.json_pages = False
    project = tmp_path / "proj"
    write_project(project, url, 'alpha = "<2"')
    done = cli(project, cache, "lock")
    assert done.returncode == 0, done.stderr
    lock = parse_lock((project / "mochi.lock").read_text(), project / "mochi.lock")
    assert {p.name for p in lock.packages} == {"alpha", "beta"}
    assert all(p.wheel_sha256 == p.pypi_simple_sha256 for p in lock.packages)


def test_sync_rebuilds_python_wrap_from_the_lock_offline(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    import shutil

    url, state = index
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "*"', 'import python "beta" as b\n')
    assert cli(project, cache, "lock").returncode == 0
    shutil.rmtree(project / "python_wrap")
    served = len(state.requests)
    done = cli(project, cache, "sync")
    assert done.returncode == 0, done.stderr
    assert (project / "python_wrap" / "b" / "beta_shim.mochi").is_file()
    assert len(state.requests) == served  # nothing fetched: the store was complete


def test_a_truncated_wheel_whose_hash_matches_fails_clearly(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    url, state = index
    wheel = state.root / "beta-1.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:200])  # the index advertises the new bytes' hash
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "==1.0"')
    done = cli(project, cache, "lock")
    assert done.returncode == 1, done.stderr
    assert "beta-1.0-py3-none-any.whl is not a readable wheel" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "mochi.lock").exists()


def test_a_file_url_on_another_host_is_refused_by_the_egress_proxy(
    tmp_path: Path, index: tuple[str, IndexState], cache: Path
) -> None:
    # The index links its files to another origin (the same server under the name localhost):
    # the fetch stage may reach only the configured index, so nothing is fetched from there.
    url, state = index
    port = url.split(":")[2].split("/")[0]
    state.file_origin = f"http://localhost:{port}"
    project = tmp_path / "proj"
    write_project(project, url, 'beta = "==1.0"')
    done = cli(project, cache, "lock")
    assert done.returncode != 0, done.stderr
    assert re.search(
        f"egress proxy refused: (GET|HEAD) http://localhost:{port}/files/", done.stderr
    )
    assert not any(r.startswith("/files/") for r in state.requests)
    assert not (project / "mochi.lock").exists()
    assert "file-hosts" in done.stderr  # the error says how to allow such a host
    # Declared in the manifest, the file host is allowed.
    manifest = project / "mochi.toml"
    declared = f'{{ url = "{url}", file-hosts = ["localhost:{port}"] }}'
    manifest.write_text(manifest.read_text().replace(f'{{ url = "{url}" }}', declared))
    again = cli(project, cache, "lock")
    assert again.returncode == 0, again.stderr
    assert any(r.startswith("/files/") for r in state.requests)
