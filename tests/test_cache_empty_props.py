"""The cache-empty-props compat patch: Theano keeps the compiled C code of ops whose
__props__ is empty (Alloc, DeepCopyOp, ...) instead of compiling it in every process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compile_count import kept_modules, logging_cxx, run_probe
from conftest import run_cli
from releases import CACHE_EMPTY_PROPS_FILES, RELEASES
from theano_det import operations
from theano_det.target import describe_package

PATCH_ID = "cache-empty-props"
COMMENT = b"# theano-det compat: an empty __props__ would make the key unversioned (Aesara #1108)\n"
UNVERSIONED_WARNING = "not all the following op(s) implement c_code_cache_version()"

# Alloc's __props__ is (): in Theano 1.0.5 its module is compiled again in every process.
PROBE = """
import json, numpy as np, theano, theano.tensor as T
x, n = T.vector(), T.iscalar()
f = theano.function([x, n], T.alloc(x, n, 3))
print(json.dumps({"theano": theano.__file__,
                  "ops": [type(node.op).__name__ for node in f.maker.fgraph.toposort()],
                  "out": f(np.arange(3, dtype=theano.config.floatX), 4).tobytes().hex()}))
"""


@pytest.mark.parametrize("name", sorted(CACHE_EMPTY_PROPS_FILES))
def test_each_release_that_keys_by_props_gets_the_one_edit(release, name):
    relative = CACHE_EMPTY_PROPS_FILES[name]
    report = operations.patch(describe_package(release(name)), mode=operations.DRY_RUN)
    (plan,) = [plan for plan in report.files if plan.relative == relative]
    (outcome,) = plan.outcomes
    assert outcome.patch_id == PATCH_ID and outcome.matches()
    assert [site.note for site in outcome.sites] == ["empty-props-versioned"]
    quote = b'"' if b'hasattr(node.op, "__props__")' in plan.current else b"'"
    old = b"if hasattr(node.op, %s__props__%s):" % (quote, quote)
    new = b"if getattr(node.op, %s__props__%s, None):" % (quote, quote)
    assert plan.current.count(old) == 1
    # The condition and a comment, nothing else.
    assert plan.desired.replace(b" " * 12 + COMMENT, b"", 1).replace(new, old) == plan.current
    compile(plan.desired, relative, "exec")  # still Python


@pytest.mark.parametrize("name", sorted(set(RELEASES) - set(CACHE_EMPTY_PROPS_FILES)))
def test_releases_that_leave_props_out_of_the_key_are_left_alone(release, name):
    package = release(name)
    assert b"__props__" not in (package / "gof/cc.py").read_bytes()  # no such hole in their cache
    report = operations.patch(describe_package(package), mode=operations.DRY_RUN)
    assert [plan for plan in report.files if plan.relative == "gof/cc.py" or PATCH_ID in plan.patch_ids] == []


def compile_alloc(package: Path, compiledir: Path, cxx: Path, log: Path) -> tuple:
    """(probe's output, stderr, modules g++ built into the compiledir) of one fresh process."""
    report, stderr, built = run_probe(PROBE, package, compiledir, cxx, log)
    assert report["ops"] == ["Alloc"], report
    return report["out"], stderr, built


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("g++"), reason="Theano compiles its C code with g++")
def test_a_second_process_compiles_nothing_and_computes_the_same(release_copy, tmp_path):
    patched, released = release_copy("1.0.5", "patched"), release_copy("1.0.5", "released")
    assert run_cli("patch", "--theano-dir", patched, "--no-config").returncode == 0
    compiledir, log, cxx = tmp_path / "compiledir", tmp_path / "cxx.log", logging_cxx(tmp_path / "bin")

    first, warnings, built = compile_alloc(patched, compiledir, cxx, log)
    assert len(built) == 1 and UNVERSIONED_WARNING not in warnings, (built, warnings[-2000:])
    kept = kept_modules(compiledir)
    assert len(kept) == 1 and Path(built[0]).parent.name in kept

    second, warnings, built = compile_alloc(patched, compiledir, cxx, log)
    assert built == [] and UNVERSIONED_WARNING not in warnings, (built, warnings[-2000:])
    assert kept_modules(compiledir) == kept and second == first

    # The released file: Alloc's module is compiled again, although the same code is cached.
    unpatched, warnings, built = compile_alloc(released, compiledir, cxx, log)
    assert len(built) == 1 and UNVERSIONED_WARNING in warnings and "Alloc" in warnings, built
    assert kept_modules(compiledir) == kept and unpatched == first
