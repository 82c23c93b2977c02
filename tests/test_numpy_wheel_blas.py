"""The numpy-wheel-blas compat patch: Theano 1.0.x imports with numpy's wheels (no
blas_opt_info) and links the OpenBLAS bundled in them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import numpy.distutils.__config__ as numpy_build_config
import pytest

from conftest import PATCHED_COMPILEDIR, SPEED_FLAGS, run_cli
from releases import NUMPY_WHEEL_BLAS_RELEASES
from theano_det import operations
from theano_det.target import describe_package

WHEEL_WITHOUT_BLAS_OPT_INFO = not hasattr(numpy_build_config, "blas_opt_info")

GEMM_PROBE = """
import json, numpy as np, theano, theano.tensor as T
a, b, v = T.matrix(), T.matrix(), T.vector()
mm = theano.function([a, b], T.dot(a, b))
mv = theano.function([a, v], T.dot(a, v))
x = np.random.RandomState(0).rand(60, 50).astype(theano.config.floatX)
y = np.random.RandomState(1).rand(50, 40).astype(theano.config.floatX)
print(json.dumps({
    "ldflags": theano.config.blas.ldflags,
    "mm_ops": [type(node.op).__name__ for node in mm.maker.fgraph.toposort()],
    "mv_ops": [type(node.op).__name__ for node in mv.maker.fgraph.toposort()],
    "mm_error": float(np.abs(mm(x, y) - x.dot(y)).max()),
    "mv_error": float(np.abs(mv(x, y[:, 0]) - x.dot(y[:, 0])).max()),
}))
"""


def theano_env(package: Path, flags: str = "") -> dict:
    """The copy first on the path, its own compiledir, and no blas.ldflags (the conftest sets one)."""
    env = dict(os.environ, PYTHONPATH=str(package.parent))
    env["THEANO_FLAGS"] = f"base_compiledir={PATCHED_COMPILEDIR},{SPEED_FLAGS}" + (f",{flags}" if flags else "")
    return env


@pytest.mark.parametrize("name", NUMPY_WHEEL_BLAS_RELEASES)
def test_each_1_0_release_gets_both_edits(release, name):
    report = operations.patch(describe_package(release(name)), mode=operations.DRY_RUN)
    (plan,) = [plan for plan in report.files if plan.relative == "configdefaults.py"]
    (outcome,) = plan.outcomes
    assert outcome.patch_id == "numpy-wheel-blas" and outcome.matches()
    compile(plan.desired, "configdefaults.py", "exec")  # still Python


def test_a_configdefaults_no_patch_knows_is_left_alone_with_a_note(release_copy):
    package = release_copy("1.0.5")
    config = package / "configdefaults.py"
    edited = config.read_bytes().replace(b"blas_info = np.distutils.__config__.blas_opt_info",
                                         b"blas_info = {}  # the folk recipe")
    config.write_bytes(edited)
    done = run_cli("patch", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert "configdefaults.py: left alone: not a release of this file that numpy-wheel-blas knows" in done.stderr
    assert config.read_bytes() == edited


@pytest.mark.slow
@pytest.mark.skipif(not WHEEL_WITHOUT_BLAS_OPT_INFO, reason="needs a numpy wheel without blas_opt_info (1.22+)")
def test_theano_imports_without_flags_and_links_numpys_openblas(release_copy):
    package = release_copy("1.0.5")
    before = subprocess.run([sys.executable, "-c", "import theano"], capture_output=True, text=True,
                            env=theano_env(package), timeout=900)
    assert before.returncode != 0 and "blas_opt_info" in before.stderr  # what users meet

    assert run_cli("patch", "--theano-dir", package, "--no-config").returncode == 0
    done = subprocess.run([sys.executable, "-c", GEMM_PROBE], capture_output=True, text=True,
                          env=theano_env(package), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "-ltheano_det_blas" in report["ldflags"]
    folder = Path(next(flag[2:] for flag in report["ldflags"].split() if flag.startswith("-L")))
    linked = subprocess.run(["ldd", str(folder / "libtheano_det_blas.so")], capture_output=True, text=True).stdout
    numpy_libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    assert f"{numpy_libs}/libopenblas" in linked, linked
    assert "Dot22" in report["mm_ops"] and "CGemv" in report["mv_ops"], report  # the C BLAS ops
    assert report["mm_error"] < 1e-12 and report["mv_error"] < 1e-12, report


@pytest.mark.slow
@pytest.mark.skipif(not WHEEL_WITHOUT_BLAS_OPT_INFO, reason="needs a numpy wheel without blas_opt_info (1.22+)")
def test_without_a_compiler_it_falls_back_to_no_blas_as_theano_does(release_copy):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package, "--no-config").returncode == 0
    done = subprocess.run([sys.executable, "-c", "import theano; print(repr(theano.config.blas.ldflags))"],
                          capture_output=True, text=True, env=theano_env(package, "cxx="), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "''"
