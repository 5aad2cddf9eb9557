"""The project itself: a built wheel installs into a fresh environment and every architecture
folder imports under the mochi_pybridge namespace (the editable install is what the rest of
the suite runs on)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
COMMANDS = (
    "add",
    "lock",
    "sync",
    "update",
    "export",
    "stubs",
    "publish",
    "verify",
    "doctor",
    "serve",
)  # SPEC §2


@pytest.mark.slow
def test_built_wheel_installs_and_imports(tmp_path: Path) -> None:
    uv = str(Path(sys.executable).with_name("uv"))
    subprocess.run(
        [uv, "build", "--wheel", "-q", "-o", str(tmp_path / "dist"), str(ROOT)], check=True
    )
    (wheel,) = (tmp_path / "dist").glob("mochi_pybridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"mochi_pybridge", f"{wheel.name.split('-py3')[0]}.dist-info"}  # no generic names
    for folder in ("kernel", "protocol", "runners", "sandbox"):
        assert f"mochi_pybridge/{folder}/__init__.py" in names
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
    )
    code = (
        "import mochi_pybridge.kernel.cli, mochi_pybridge.protocol, mochi_pybridge.runners.fetch, "
        "mochi_pybridge.sandbox.launch, mochi_pybridge.runners.bindings.emit; print('ok')"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ok"
    help_text = subprocess.run([str(venv / "bin" / "mochi-pybridge"), "--help"], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
    for command in COMMANDS:
        assert command in help_text


def test_every_command_of_the_spec_has_help() -> None:
    for command in COMMANDS:
        done = subprocess.run([sys.executable, "-m", "mochi_pybridge", command, "--help"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, command
        assert "usage: mochi-pybridge" in done.stdout
