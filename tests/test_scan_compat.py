"""The scan-py311 compat patches: scan's C loop compiles and runs on Python 3.11, and
computes what scan's Python loop computes, bit for bit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy
import pytest

from conftest import CACHE, PATCHED_COMPILEDIR, SPEED_FLAGS, run_cli
from releases import SCAN_PY311_FILES
from theano_det import operations
from theano_det.target import describe_package

SCAN_PATCHES = {"scan-py311", "scan-py311-cython025"}
# One release per Cython that generated a scan_perform.c we patch.
VARIANTS = {"0.9.0": "0.25.2", "1.0.5": "0.28.5", "pymc-1.1.2": "0.29.21"}
PROBE = Path(__file__).with_name("scan_c_probe.py")
# Theano's own scan tests compile some 140 modules nothing else uses. In the cache above,
# every later process (each client's training) would read all their keys at its first
# compile; in a cache of their own, nobody else pays for them.
SCAN_TESTS_COMPILEDIR = CACHE / "theano-compile-scan-tests"
# What Theano's scan_perform_ext.py defines when it compiles the file (numpy >= 1.7).
NUMPY_DEFINES = [f"-DNPY_{name}=NPY_ARRAY_{name}" for name in
                 ("ENSUREARRAY", "ENSURECOPY", "ALIGNED", "WRITEABLE", "UPDATE_ALL", "C_CONTIGUOUS", "F_CONTIGUOUS")]


def patched_scan_source(release, name: str) -> tuple:
    """(original, patched) bytes of the release's scan_perform.c, from an in-process dry run."""
    report = operations.patch(describe_package(release(name)), mode=operations.DRY_RUN)
    (plan,) = [plan for plan in report.files if plan.relative == SCAN_PY311_FILES[name]]
    return plan.current, plan.desired


def compile_cxx(source: bytes, folder: Path, include: str, *flags: str) -> subprocess.CompletedProcess:
    """g++ on `source` as Theano compiles scan_perform.c (C++, its NumPy defines), with `include`."""
    path = folder / "scan_perform.c"
    path.write_bytes(source)
    return subprocess.run(
        ["g++", "-x", "c++", "-fwrapv", "-fno-strict-aliasing", "-DNDEBUG", f"-I{include}",
         f"-I{numpy.get_include()}", "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION", *NUMPY_DEFINES,
         *flags, str(path)],
        capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize("name", sorted(SCAN_PY311_FILES))
def test_each_known_scan_perform_c_gets_all_three_edits(release, name):
    report = operations.patch(describe_package(release(name)), mode=operations.DRY_RUN)
    (plan,) = [plan for plan in report.files if plan.relative == SCAN_PY311_FILES[name]]
    (outcome,) = plan.outcomes
    assert outcome.patch_id in SCAN_PATCHES and outcome.matches()
    assert sorted(site.note for site in outcome.sites) == ["frame-line-number", "portable-cython-switches",
                                                          "pycode-new-3.11"]
    assert plan.desired.count(b"#if PY_VERSION_HEX >= 0x030B0000") == 3


def test_a_scan_perform_c_no_patch_knows_is_left_alone_with_a_note(release_copy):
    package = release_copy("1.0.5")
    scan = package / SCAN_PY311_FILES["1.0.5"]
    edited = scan.read_bytes() + b"/* edited by hand */\n"
    scan.write_bytes(edited)
    done = run_cli("patch", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert scan.read_bytes() == edited
    assert "scan_module/c_code/scan_perform.c: left alone: not a release of this file that" in done.stderr
    assert "configdefaults.py: patched" in done.stderr  # the rest goes on
    status = run_cli("status", "--theano-dir", package)
    assert status.returncode == 0, status.stderr
    assert "scan_module/c_code/scan_perform.c: left alone" in status.stderr
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert scan.read_bytes() == edited


def test_no_compat_leaves_scan_blas_and_cache_keys_out_and_says_so(release_copy):
    package = release_copy("1.0.5")
    done = run_cli("patch", "--theano-dir", package, "--no-compat", "--no-config")
    assert done.returncode == 0, done.stderr
    assert "scan-py311: left out (--no-compat)" in done.stderr
    assert "numpy-wheel-blas: left out (--no-compat)" in done.stderr
    assert "cache-empty-props: left out (--no-compat)" in done.stderr
    assert "cop-stable-version: left out (--no-compat)" in done.stderr
    assert "scan-py311-cython025" not in done.stderr  # not this release's file
    for relative in (SCAN_PY311_FILES["1.0.5"], "configdefaults.py", "gof/cc.py", "gof/op.py"):
        assert b"theano-det" not in (package / relative).read_bytes(), relative


def older_python_includes() -> list:
    """Include folders of Python 3.7 - 3.10 interpreters on this machine (pyenv or PATH)."""
    found = []
    for minor in ("3.10", "3.9", "3.8", "3.7"):
        candidates = sorted(Path.home().glob(f".pyenv/versions/{minor}.*/include/python{minor}"))
        candidates += [Path(f"/usr/include/python{minor}")]
        found += [str(path) for path in candidates[:1] if (path / "Python.h").is_file()]
    return found


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_below_python_3_11_the_patched_file_is_the_released_one_after_preprocessing(release, tmp_path, name):
    """Why the patch may be applied whatever the target's Python: before 3.11 it compiles
    to exactly what the release compiles to."""
    includes = older_python_includes()
    if not includes:
        pytest.skip("no Python 3.7 - 3.10 headers on this machine (pyenv install 3.9 gives some)")
    original, patched = patched_scan_source(release, name)
    for include in includes[:2]:
        outputs = []
        for source in (original, patched):
            done = compile_cxx(source, tmp_path, include, "-E", "-P")
            assert done.returncode == 0, done.stderr[-2000:]
            outputs.append([line for line in done.stdout.splitlines() if line.strip()])
        assert outputs[0] == outputs[1], include


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info < (3, 11), reason="the failure this patch fixes needs Python 3.11+")
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_on_this_python_the_release_fails_to_compile_and_the_patched_file_compiles(release, tmp_path, name):
    include = sysconfig.get_paths()["include"]
    original, patched = patched_scan_source(release, name)
    before = compile_cxx(original, tmp_path, include, "-fsyntax-only")
    assert before.returncode != 0 and "longintrepr.h" in before.stderr
    after = compile_cxx(patched, tmp_path, include, "-fsyntax-only")
    assert after.returncode == 0, after.stderr[-3000:]


def patched_copy(release_copy, name: str = "1.0.5") -> Path:
    package = release_copy(name)
    done = run_cli("patch", "--theano-dir", package, "--no-config")
    assert done.returncode == 0, done.stderr
    return package


def theano_env(package: Path, flags: str = "", compiledir: Path = PATCHED_COMPILEDIR) -> dict:
    """The patched copy first on the path, a compiledir for patched copies, no blas.ldflags preset."""
    env = dict(os.environ, PYTHONPATH=str(package.parent))
    env["THEANO_FLAGS"] = f"base_compiledir={compiledir},{SPEED_FLAGS}" + (f",{flags}" if flags else "")
    return env


@pytest.mark.slow
def test_scan_runs_its_c_loop_with_the_same_bits_as_its_python_loop(release_copy):
    """An LSTM forward and gradient (two scans): the compiled C loop is the one used, and
    its results equal, bit for bit, those of Scan.execute driving the same inner function."""
    package = patched_copy(release_copy)
    done = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True,
                          env=theano_env(package), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["scan_perform_ext"].startswith(str(package))
    compiled = Path(report["compiled_module"]).parent
    # Built from the patched file (Theano writes what it compiles as mod.cpp), not a stale cache.
    assert (compiled / "mod.cpp").read_bytes() == (package / SCAN_PY311_FILES["1.0.5"]).read_bytes()
    for dtype in ("float64", "float32"):
        result = report[dtype]
        assert result["c_loops"] == ["c", "c"], result
        assert result["python_loops"] == ["python", "python"], result
        assert result["c_equals_python_loop_bitwise"], result
        assert result["max_abs_diff_to_py_linker"] < (1e-10 if dtype == "float64" else 1e-4), result


# A representative part of Theano 1.0.5's own scan tests (theano/scan_module/tests/test_scan.py):
# sequences, taps, shared updates, gradients (whose scans have mit_mot outputs), RNGs, while
# loops, map and reduce. Left out for their cost alone, as they cover no other part of the C
# loop: test_grad_multiple_outs_taps (and its _backwards), test_foldl_memory_consumption and
# test_grad_dtype_change. With an empty compile cache the subset built some 675 C modules in
# 774 s with them, and builds 137 in 141 s without them (9 s once they are cached).
THEANO_SCAN_TESTS = " or ".join([
    "test_one_sequence_one_output_weights", "test_multiple_inputs_multiple_outputs",
    "test_using_taps_input_output", "test_past_future_taps_shared", "test_shared_arguments_with_updates",
    "test_grad_one_output", "test_simple_shared_mrg_random", "test_while0", "test_map", "test_reduce",
    "test_grad_two_scans", "test_scan_output_padding",
])


def run_theano_scan_tests(package: Path, flags: str, tmp_path: Path) -> dict:
    """pytest's counts of the subset ("passed", "failed", "error", ...), the scan loops that ran
    ("c", "python", counted by a plugin) and the end of its log ("log")."""
    plugin = tmp_path / "count_scan_loops.py"
    counts = tmp_path / f"counts-{flags or 'c'}.json".replace("=", "-")
    plugin.write_text(f"""
import json
from theano.scan_module import scan_op, scan_perform_ext
calls = {{"c": 0, "python": 0}}
c_perform, execute = scan_perform_ext.perform, scan_op.Scan.execute
def counted_perform(*args):
    calls["c"] += 1
    return c_perform(*args)
def counted_execute(self, *args):
    calls["python"] += 1
    return execute(self, *args)
scan_perform_ext.perform, scan_op.Scan.execute = counted_perform, counted_execute
def pytest_sessionfinish(session):
    open({str(counts)!r}, "w").write(json.dumps(calls))
""")
    env = theano_env(package, flags, SCAN_TESTS_COMPILEDIR)
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "count_scan_loops", "-o", "addopts=",
         "--rootdir", str(package.parent), str(package / "scan_module/tests/test_scan.py"), "-k", THEANO_SCAN_TESTS],
        capture_output=True, text=True, env=env, cwd=package.parent, timeout=3000,
    )
    summary = done.stdout.strip().splitlines()[-1]
    found = {word.rstrip("s"): int(number) for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}
    return {"passed": 0, "failed": 0, "error": 0, "skipped": 0, **found, **json.loads(counts.read_text()),
            "log": done.stdout[-3000:]}


@pytest.mark.slow
def test_theanos_own_scan_tests_pass_with_the_c_loop_as_with_linker_py(release_copy, tmp_path):
    pytest.importorskip("nose", reason="Theano 1.0.5's tests import nose (pip install nose parameterized)")
    package = patched_copy(release_copy)
    c_loop = run_theano_scan_tests(package, "", tmp_path)
    assert c_loop["c"] > 0 and c_loop["python"] == 0, c_loop["log"]  # the C loop ran every scan
    assert c_loop["passed"] > 0, c_loop["log"]
    if c_loop["failed"] or c_loop["error"]:
        # Only then is the reference needed: do these tests fail with Python's loop too?
        # (When none fails, the C loop passes at least what linker=py passes.)
        reference = run_theano_scan_tests(package, "linker=py", tmp_path)
        assert c_loop["passed"] >= reference["passed"] > 0, (c_loop["log"], reference["log"])
        assert c_loop["failed"] + c_loop["error"] <= reference["failed"] + reference["error"], c_loop["log"]
