"""A real pip installation of Theano 1.0.5 in its own virtual environment, patched via --python."""

from __future__ import annotations

import base64
import csv
import hashlib
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def theano_env(tmp_path_factory):
    """A virtual environment of its own with Theano 1.0.5 installed by pip (RECORD and all).

    Its numpy, scipy and six are the test environment's, through a .pth file: its own
    site-packages comes first on sys.path, so `import theano` finds its own Theano; and
    nothing else has to be unpacked again (scipy alone is 100 MB)."""
    env = tmp_path_factory.mktemp("env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "theano==1.0.5"],
        check=True,
    )
    (site_packages(python) / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def record_hashes(site: Path) -> dict:
    """sha256 of every theano/ file as pip's RECORD lists it (urlsafe base64, no padding)."""
    (record,) = [path for path in site.glob("*.dist-info/RECORD") if path.parent.name.lower() == "theano-1.0.5.dist-info"]
    hashes = {}
    with open(record, newline="") as handle:
        for path, digest, _size in csv.reader(handle):
            if path.startswith("theano/") and digest.startswith("sha256="):
                hashes[path] = digest[len("sha256="):]
    return hashes


def file_digest(path: Path) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()


def test_patch_another_interpreters_theano_and_restore_pips_record(theano_env):
    site = site_packages(theano_env)
    recorded = record_hashes(site)
    assert file_digest(site / "theano/gpuarray/opt.py") == recorded["theano/gpuarray/opt.py"]

    status = run_cli("status", "--python", theano_env)
    assert status.returncode == 1, status.stderr
    assert f"Theano 1.0.5 at {site / 'theano'}" in status.stderr

    done = run_cli("patch", "--python", theano_env)
    assert done.returncode == 0, done.stderr
    opt = site / "theano/gpuarray/opt.py"
    assert file_digest(opt) != recorded["theano/gpuarray/opt.py"]
    assert b"GpuAdvancedIncSubtensor1_dev20(" not in opt.read_bytes()

    imported = subprocess.run(
        [str(theano_env), "-c", "import theano.gpuarray.opt as o; print(o.local_gpua_advanced_incsubtensor1.__name__)"],
        capture_output=True, text=True,
    )
    assert imported.returncode == 0, imported.stderr
    assert "local_gpua_advanced_incsubtensor1" in imported.stdout
    assert run_cli("status", "--python", theano_env).returncode == 0

    undone = run_cli("unpatch", "--python", theano_env)
    assert undone.returncode == 0, undone.stderr
    mismatched = [path for path, digest in recorded.items() if file_digest(site / path) != digest]
    assert mismatched == []
    assert not (site / "theano/.theano-det").exists()


def test_an_interpreter_without_theano_is_reported_with_exit_4(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = run_cli("patch", "--python", bare / "bin" / "python")
    assert done.returncode == 4
    assert "no Theano is importable by" in done.stderr
    assert "Traceback" not in done.stderr
