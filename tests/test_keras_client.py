"""A real client: Keras 2.3.1 with the Theano backend, on Python 3.11, under `theano-det run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import CACHE, run_cli

PROGRAMS = Path(__file__).resolve().parent / "seeding_programs"

# Keras 2.3.1 and the two packages it imports, pinned by the sha256 of their wheels
# (pure Python). Its other imports (numpy, scipy, six, yaml) are the test venv's own:
# Theano brings numpy, scipy and six, libcst brings PyYAML. Installing them with
# --no-deps into a folder of their own leaves the venv's Theano and numpy untouched.
KERAS_REQUIREMENTS = """\
keras==2.3.1 --hash=sha256:d08a57bd63546175f8f19232ba05906514d419da3e0af8ef7437fa1c11442e20
keras-applications==1.0.8 --hash=sha256:df4323692b8c1174af821bf906f1e442e63fa7589bf0f1230a0b6bdc5a810c95
keras-preprocessing==1.1.2 --hash=sha256:7b82029b130ff61cc99b55f3bd27427df4838576838c5b2f65940e4fcec99a7b
"""


@pytest.fixture(scope="session")
def keras_site() -> Path:
    """A folder holding Keras 2.3.1, installed once and kept in CACHE between runs."""
    folder = CACHE / "keras-2.3.1"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "keras-2.3.1.lock")):
        if not (folder / ".complete").exists():
            requirements = CACHE / "keras-2.3.1.txt"
            requirements.write_text(KERAS_REQUIREMENTS)
            partial = CACHE / "keras-2.3.1.partial"
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "--require-hashes", "--only-binary", ":all:", "--target", str(partial),
                 "-r", str(requirements)],
                check=True, timeout=600,
            )
            (partial / ".complete").touch()
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
    return folder


def train(keras_site: Path, *run_args) -> str:
    env = dict(os.environ, PYTHONPATH=str(keras_site), KERAS_BACKEND="theano")
    done = run_cli("run", *run_args, "--", sys.executable, PROGRAMS / "train_keras.py", env=env)
    assert done.returncode == 0, done.stderr
    backend, digest = done.stdout.split()
    assert backend == "theano"
    return digest


@pytest.mark.slow
def test_keras_trains_to_identical_weights_with_one_seed_and_other_weights_with_another(keras_site):
    first, second, other = train(keras_site, "--seed", 7), train(keras_site, "--seed", 7), train(keras_site, "--seed", 8)
    assert first == second
    assert first != other


@pytest.mark.slow
def test_keras_2_3_1_needs_the_aliases_from_python_3_10_on(keras_site):
    env = dict(os.environ, PYTHONPATH=str(keras_site), KERAS_BACKEND="theano")
    done = run_cli("run", "--no-compat", "--", sys.executable, "-c", "import keras", env=env)
    if sys.version_info >= (3, 10):
        assert done.returncode != 0
        assert "cannot import name 'Iterable' from 'collections'" in done.stderr
    else:  # 3.9 still has the aliases (deprecated)
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_seed_all_under_run_shares_the_bootstraps_state_and_reports_keras(keras_site):
    env = dict(os.environ, PYTHONPATH=str(keras_site), KERAS_BACKEND="theano")
    program = ("import keras, theano_det, _theano_det_rngseed as bootstrap_copy\n"
               "from theano_det.seeding import startup_module\n"
               "assert startup_module('_theano_det_rngseed') is bootstrap_copy\n"
               "print([item.what for item in theano_det.seed_all(1, hashseed='ignore').seeded])")
    done = run_cli("run", "--seed", 1, "--", sys.executable, "-c", program, env=env)
    assert done.returncode == 0, done.stderr
    assert "'keras.backend (theano)'" in done.stdout
