"""Shared fixtures: an isolated HOME for every test, and real Theano releases from PyPI."""

from __future__ import annotations

import compileall
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from releases import CACHE, download_sdist, release_package  # noqa: F401 (download_sdist: for the tests)

# longest_first: test files start longest first (tests/longest_first.py); pytester: its tests
pytest_plugins = ["longest_first", "pytester"]

ROOT = Path(__file__).resolve().parent.parent
# pytest keeps the test modules it rewrites for its assertions in tests/__pycache__, but
# writes none where PYTHONDONTWRITEBYTECODE is set: every worker then rewrote every test
# module again in every run (3 s each). The test modules imported after this line are
# written once; the processes the tests start still see the variable.
sys.dont_write_bytecode = False
THEANO_COMPILEDIR = CACHE / "theano-compile"


def cxxflags_with_march_native(flags: str) -> str:
    """-march=native after the gcc.cxxflags already in `flags` (the GPU runner's include and
    library paths), which a second gcc.cxxflags would otherwise replace."""
    given = [part.split("=", 1)[1] for part in flags.split(",") if part.startswith("gcc.cxxflags=")]
    return " ".join(filter(None, [given[-1] if given else "", "-march=native"]))


# Theano flags for speed alone, which change nothing the tests check:
# - Theano sleeps compile.wait to 2 x compile.wait seconds (default 5) whenever another
#   process holds its compile lock; the test workers share the cache, so they retry after 1-2 s;
# - without -march in gcc.cxxflags, every Theano process asks g++ which flags -march=native
#   means (0.3-0.7 s); saying -march=native directly skips that question;
# - every Theano process reads the key of every module in the cache at its first compile
#   (about 1.7 ms each); modules nobody opened for a week (left by older flags or patches)
#   are skipped instead of read, and Theano deletes them a week later (default: 24 days).
SPEED_FLAGS = (f"compile.wait=1,gcc.cxxflags={cxxflags_with_march_native(os.environ.get('THEANO_FLAGS', ''))},"
               "cmodule.age_thresh_use=604800")
# Not determinism settings: a shared compile cache (speed) and no BLAS probing (numpy 1.23
# wheels have no blas_opt_info, which Theano 1.0.5 asks for).
TEST_FLAGS = f"base_compiledir={THEANO_COMPILEDIR},blas.ldflags=,{SPEED_FLAGS}"
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
    # Flags already set (the GPU runner's device and library paths) stay; ours come last and win.
    inherited = os.environ.get("THEANO_FLAGS", "")
    monkeypatch.setenv("THEANO_FLAGS", f"{inherited},{TEST_FLAGS}" if inherited else TEST_FLAGS)
    return home


def module_env(home: Path, flags: str = "") -> dict:
    """The environment of a run shared by a module (made before isolated_home applies): HOME
    in `home`, no THEANORC or PYTHONHASHSEED, THEANO_FLAGS only TEST_FLAGS and `flags` (the
    caller's own flags are not kept)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if name not in ("THEANORC", "PYTHONHASHSEED")}
    env.update(HOME=str(home), THEANO_FLAGS=f"{TEST_FLAGS},{flags}" if flags else TEST_FLAGS)
    return env


# The compile cache of patched copies of Theano, apart from the shared one: Theano keys scan's
# compiled C loop by its version alone, so a loop built from a patched scan_perform.c in the
# shared cache would be picked up by the unpatched Theano of every other test.
PATCHED_COMPILEDIR = CACHE / "theano-compile-patched"


@pytest.fixture(scope="session")
def patched_theano(tmp_path_factory) -> Path:
    """A folder holding a copy of the test venv's Theano, patched by `theano-det patch` as
    users' and the Docker image's are (put it first on PYTHONPATH)."""
    import importlib.util

    installed = importlib.util.find_spec("theano").submodule_search_locations[0]  # not imported here
    folder = tmp_path_factory.mktemp("patched-theano")
    shutil.copytree(installed, folder / "theano", ignore=shutil.ignore_patterns("__pycache__"))
    done = run_cli("patch", "--theano-dir", folder / "theano", "--no-config")
    assert done.returncode == 0, done.stderr
    return compile_bytecode(folder)


def first_on_pythonpath(env: dict, *folders) -> dict:
    """`env` with `folders` first on PYTHONPATH, before the entries it already has."""
    path = [str(folder) for folder in folders] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    return dict(env, PYTHONPATH=os.pathsep.join(path))


def on_patched_theano(env: dict, patched: Path, *more_path: Path) -> dict:
    """`env` for a program run on the patched copy `patched`: it (then `more_path`) first on
    PYTHONPATH, and the patched copies' compile cache. Its compat patches let a process reuse
    what an earlier one compiled; the venv's unpatched Theano 1.0.5 compiles some modules
    again in every process (seconds each)."""
    flags = f"{env.get('THEANO_FLAGS', '')},base_compiledir={PATCHED_COMPILEDIR}".lstrip(",")
    return first_on_pythonpath(dict(env, THEANO_FLAGS=flags), patched, *more_path)


@pytest.fixture
def patched_environ(patched_theano, monkeypatch):
    """The test's processes, started with os.environ, run their programs on the patched copy."""
    for name, value in on_patched_theano(dict(os.environ), patched_theano).items():
        monkeypatch.setenv(name, value)


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


def compile_bytecode(folder: Path) -> Path:
    """Write the .pyc files of a copy of Theano (or of a library) that tests run programs from.
    Where PYTHONDONTWRITEBYTECODE is set, every process would otherwise compile its modules
    again from source: 0.6 s per process for Theano. Files changed later (patched) fail the
    .pyc's check of their size and time and are compiled as before; `tests` folders are left out."""
    compileall.compile_dir(str(folder), quiet=2, rx=re.compile(r"[/\\]tests[/\\]"))
    return folder


# Tables that tests write and want shown at the end of the session (title -> file). The
# workers of pytest-xdist write them; the process that shows the summary reads them.
SESSION_TABLES = {"client matrix (tests/test_clients.py)": ROOT / "build" / "client-matrix.md"}
SESSION_STARTED = time.time()


def pytest_terminal_summary(terminalreporter):
    for title, path in SESSION_TABLES.items():
        if path.is_file() and path.stat().st_mtime >= SESSION_STARTED:  # written by this session
            terminalreporter.write_sep("-", title)
            for line in path.read_text().splitlines():
                terminalreporter.write_line(line)


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


def load_script(relative: str, name: str):
    """A script of the project (tools/, benchmarks/), imported as module `name` from its path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args, env=None, cwd=None, input=None):
    """Run `python -m theano_det ARGS` in a fresh process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "theano_det", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, input=input, timeout=600,
    )
