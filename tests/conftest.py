"""Shared fixtures: an isolated HOME for every test, and real Theano releases from PyPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

from releases import RELEASES

ROOT = Path(__file__).resolve().parent.parent
# Downloads and Theano's compile cache survive between runs (and clean clones) here.
CACHE = Path(os.environ.get("THEANO_DET_TEST_CACHE", Path.home() / ".cache" / "theano-det-tests"))
THEANO_COMPILEDIR = CACHE / "theano-compile"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test may read or write the real ~/.theanorc or depend on the caller's flags."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("THEANORC", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    # Not determinism settings: a shared compile cache (speed) and no BLAS probing
    # (numpy 1.23 wheels have no blas_opt_info, which Theano 1.0.5 asks for). Flags
    # already set (the GPU runner's device and library paths) stay; ours come last and win.
    inherited = os.environ.get("THEANO_FLAGS", "")
    ours = f"base_compiledir={THEANO_COMPILEDIR},blas.ldflags="
    monkeypatch.setenv("THEANO_FLAGS", f"{inherited},{ours}" if inherited else ours)
    return home


def download_release(name: str) -> Path:
    """The unpacked sdist of a pinned Theano release (downloaded once by pip, hash-checked)."""
    requirement, sha256 = RELEASES[name]
    return download_sdist(requirement, sha256, CACHE / "releases" / name)


def download_sdist(requirement: str, sha256: str, unpacked: Path) -> Path:
    """The sdist of `requirement` ("name==version"), hash-checked, unpacked into `unpacked` once."""
    name = unpacked.name
    if (unpacked / ".complete").exists():
        return unpacked
    downloads = CACHE / "sdists"
    downloads.mkdir(parents=True, exist_ok=True)
    requirements = CACHE / f"{name}.txt"
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-binary", ":all:", "--require-hashes", "-r", str(requirements),
         "-d", str(downloads)],
        check=True,
    )
    archive = find_archive(downloads, requirement.split("==")[1], sha256)
    if unpacked.exists():
        shutil.rmtree(unpacked)
    unpacked.mkdir(parents=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(unpacked)
    else:
        with tarfile.open(archive) as bundle:
            bundle.extractall(unpacked)
    (unpacked / ".complete").touch()
    return unpacked


def find_archive(folder: Path, version: str, sha256: str) -> Path:
    import hashlib

    for path in folder.iterdir():
        if version in path.name and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    raise AssertionError(f"pip downloaded no archive of {version} with sha256 {sha256}")


def pip_target(name: str, requirements: str) -> Path:
    """A folder holding wheels installed with --no-deps from pinned, hashed `requirements`,
    installed once into CACHE/name and kept between runs (put it on PYTHONPATH)."""
    folder = CACHE / name
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / f"{name}.lock")):
        if not (folder / ".complete").exists():
            listing = CACHE / f"{name}.txt"
            listing.write_text(requirements)
            partial = CACHE / f"{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "--require-hashes", "--only-binary", ":all:", "--target", str(partial),
                 "-r", str(listing)],
                check=True, timeout=600,
            )
            (partial / ".complete").touch()
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    return folder


# Tables that tests want shown at the end of the session (title -> lines); see test_clients.py.
SESSION_TABLES: dict = {}


def pytest_terminal_summary(terminalreporter):
    for title, lines in SESSION_TABLES.items():
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


def release_package(name: str) -> Path:
    """The `theano` package folder inside the unpacked sdist of `name`."""
    (top,) = [path for path in download_release(name).iterdir() if path.is_dir()]
    return top / "theano"


@pytest.fixture(scope="session")
def release():
    return release_package


@pytest.fixture
def release_copy(tmp_path):
    """A writable copy of a release's sdist folder (theano package + PKG-INFO); returns the package."""

    def copy(name: str, folder: str = "site") -> Path:
        source = release_package(name).parent
        destination = tmp_path / folder / source.name
        shutil.copytree(source, destination, symlinks=True)
        return destination / "theano"

    return copy


def run_cli(*args, env=None, cwd=None, input=None):
    """Run `python -m theano_det ARGS` in a fresh process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "theano_det", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, input=input, timeout=600,
    )
