"""Shared fixtures: an isolated HOME for every test, and real Theano releases from PyPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from releases import CACHE, release_package

ROOT = Path(__file__).resolve().parent.parent
THEANO_COMPILEDIR = CACHE / "theano-compile"
# pip's cache of the real HOME: the wheels tests build or download (Theano, numpy, Keras)
# are reused between tests and runs, although every test gets its own HOME.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test may read or write the real ~/.theanorc or depend on the caller's flags."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PIP_CACHE_DIR", PIP_CACHE)
    monkeypatch.delenv("THEANORC", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    # Not determinism settings: a shared compile cache (speed) and no BLAS probing
    # (numpy 1.23 wheels have no blas_opt_info, which Theano 1.0.5 asks for). Flags
    # already set (the GPU runner's device and library paths) stay; ours come last and win.
    inherited = os.environ.get("THEANO_FLAGS", "")
    ours = f"base_compiledir={THEANO_COMPILEDIR},blas.ldflags="
    monkeypatch.setenv("THEANO_FLAGS", f"{inherited},{ours}" if inherited else ours)
    return home


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
