"""The cop-stable-version compat patch: a COp's cache version is a digest of its C code, so
Theano keeps its compiled module across processes whatever their PYTHONHASHSEED."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compile_count import kept_modules, logging_cxx, run_probe
from conftest import run_cli
from releases import COP_STABLE_VERSION_FILES
from theano_det import operations
from theano_det.patching import catalog
from theano_det.patching.transforms import anchored_text
from theano_det.target import describe_package

PATCH_ID = "cop-stable-version"
CALL = b"_theano_det_code_digest(self.func_codes)"

# DimShuffle is a COp in Theano 1.0.x (its C code is c_code/dimshuffle.c). The product is
# not a view of an input, so Theano adds no DeepCopyOp, whose module cache-empty-props keeps.
PROBE = """
import json, numpy as np, theano, theano.tensor as T
x, y = T.matrix(), T.matrix()
f = theano.function([x, y], x.T * y)
a = np.arange(6, dtype=theano.config.floatX).reshape(2, 3)
print(json.dumps({"theano": theano.__file__,
                  "ops": sorted(type(node.op).__name__ for node in f.maker.fgraph.toposort()),
                  "out": f(a, a.T).tobytes().hex()}))
"""


def helper_block(desired: bytes) -> bytes:
    """The lines the patch adds before the class."""
    start = desired.index(b"# theano-det compat")
    end = desired.index(b"\n\n\nclass ", start) + 3
    return desired[start:end]


@pytest.mark.parametrize("name", sorted(COP_STABLE_VERSION_FILES))
def test_each_release_with_a_cop_gets_the_two_edits(release, name):
    relative = COP_STABLE_VERSION_FILES[name]
    report = operations.patch(describe_package(release(name)), mode=operations.DRY_RUN)
    (plan,) = [plan for plan in report.files if plan.relative == relative]
    (outcome,) = plan.outcomes
    assert outcome.patch_id == PATCH_ID and outcome.matches()
    assert [site.note for site in outcome.sites] == ["code-digest-helper", "stable-cop-version"]
    assert plan.current.count(b"hash(tuple(self.func_codes))") == 1
    # A helper function and the one call, nothing else.
    helper = helper_block(plan.desired)
    assert helper.count(b"\ndef ") == 1 and b"hashlib.sha256(" in helper
    unpatched = plan.desired.replace(helper, b"", 1).replace(CALL, b"hash(tuple(self.func_codes))")
    assert unpatched == plan.current
    compile(plan.desired, relative, "exec")  # still Python


def test_0_7_0_whose_python_2_sources_hash_the_same_is_left_alone_with_a_note(release):
    package = release("0.7.0")
    assert b"return hash(tuple(self.func_codes))" in (package / "gof/op.py").read_bytes()
    report = operations.patch(describe_package(package), mode=operations.DRY_RUN)
    assert [plan for plan in report.files if PATCH_ID in plan.patch_ids] == []
    assert any(note.startswith("gof/op.py: left alone: not a release of this file that cop-stable-version knows")
               for note in report.notes), report.notes


def test_a_patched_file_is_recognised_without_a_manifest(release):
    """The helper's comment carries the mark: a patched op.py is known as patched from its bytes."""
    (patch,) = [patch for patch in catalog.load_all() if patch.id == PATCH_ID]
    for name, relative in COP_STABLE_VERSION_FILES.items():
        options = patch.options_for(relative)
        released = (release(name) / relative).read_bytes()
        patched = anchored_text.apply(released, options)
        assert not patched.already_applied and len(patched.sites) == 2, name
        again = anchored_text.apply(patched.source, options)
        assert again.already_applied and again.source == patched.source, name


def test_the_digest_is_the_same_under_any_hash_seed(release_copy, tmp_path):
    """The patched helper gives one value per C code in processes with different hash seeds."""
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package, "--no-config").returncode == 0
    source = (package / "gof/op.py").read_text()
    helper = source[source.index("def _theano_det_code_digest"):source.index("\n\n\nclass COp")]
    program = helper + "\nprint(_theano_det_code_digest(['int f() { return 1; }', 'x']), hash(('x', 'y')))\n"
    runs = [subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout.split() for seed in ("1", "2")]
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 64  # the digest: the same
    assert runs[0][1] != runs[1][1]  # what the released version used: not


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("g++"), reason="Theano compiles its C code with g++")
def test_a_process_with_another_hash_seed_compiles_nothing_and_computes_the_same(release_copy, tmp_path):
    patched, released = release_copy("1.0.5", "patched"), release_copy("1.0.5", "released")
    assert run_cli("patch", "--theano-dir", patched, "--no-config").returncode == 0
    compiledir, log, cxx = tmp_path / "compiledir", tmp_path / "cxx.log", logging_cxx(tmp_path / "bin")

    def compile_dimshuffle(package: Path, seed: str) -> tuple:
        report, _, built = run_probe(PROBE, package, compiledir, cxx, log, PYTHONHASHSEED=seed)
        assert report["ops"] == ["DimShuffle", "Elemwise"], report
        return report["out"], built

    first, built = compile_dimshuffle(patched, "1")
    assert len(built) == 2, built  # DimShuffle's module and the product's
    kept = kept_modules(compiledir)
    assert len(kept) == 2 and {Path(path).parent.name for path in built} == kept

    second, built = compile_dimshuffle(patched, "2")
    assert built == [] and kept_modules(compiledir) == kept and second == first

    # The released file: DimShuffle is compiled again in every process and kept once more.
    for seed in ("3", "4"):
        unpatched, built = compile_dimshuffle(released, seed)
        assert len(built) == 1 and b"cpu_dimshuffle" in (Path(built[0]).parent / "mod.cpp").read_bytes(), built
        assert Path(built[0]).parent.name in kept_modules(compiledir) - kept and unpatched == first
        kept = kept_modules(compiledir)
    assert len(kept) == 4
