"""The cuDNN 8/9 compatibility patch on real Theano 1.0.x sources, through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import CACHE, ROOT, run_cli
from releases import CUDNN_COMPAT_RELEASES
from theano_det import operations
from theano_det.patching import catalog
from theano_det.target import describe_package

COMPAT_FILES = [
    "gpuarray/c_code/dnn_conv_base.c",
    "gpuarray/c_code/dnn_fwd.c",
    "gpuarray/c_code/dnn_gw.c",
    "gpuarray/c_code/dnn_gi.c",
    "gpuarray/dnn.py",
]


def compat_patch():
    (patch,) = [patch for patch in catalog.load_all() if patch.id == "cudnn-compat"]
    return patch


def snapshot(package: Path) -> dict:
    """sha256 of every file under the package (the state folder excluded)."""
    return {
        str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(package.rglob("*"))
        if path.is_file() and ".theano-det" not in path.parts
    }


@pytest.mark.parametrize("name", CUDNN_COMPAT_RELEASES)
def test_every_anchor_is_found_as_often_as_the_patch_says(release, name):
    # A dry run in-process (it writes nothing): the CLI is exercised on 1.0.5 and 1.0.0 below.
    report = operations.patch(describe_package(release(name)), mode=operations.DRY_RUN)
    assert set(COMPAT_FILES) <= set(report.changed)
    files = {plan.relative: plan for plan in report.files}
    for spec in compat_patch().files:
        (outcome,) = [o for o in files[spec.path].outcomes if o.patch_id == "cudnn-compat"]
        assert outcome.matches() and outcome.skipped == []
        found = {}
        for site in outcome.sites:
            found[site.note] = found.get(site.note, 0) + 1
        assert found == {edit["name"]: edit.get("count", 1) for edit in spec.options["edits"]}, spec.path


def test_the_c_sources_are_the_same_in_every_1_0_release(release):
    # Why one set of counts fits them all (dnn.py differs, and is checked above per release).
    for relative in COMPAT_FILES[:-1]:
        digests = {hashlib.sha256((release(name) / relative).read_bytes()).hexdigest() for name in CUDNN_COMPAT_RELEASES}
        assert len(digests) == 1, relative


def test_patch_status_unpatch_round_trip_is_byte_exact(release_copy):
    package = release_copy("1.0.5")
    before = snapshot(package)
    done = run_cli("patch", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert "gpuarray/c_code/dnn_gw.c: patched (5 site(s)" in done.stderr
    changed = {path for path, digest in snapshot(package).items() if before[path] != digest}
    # and the other compatibility patches' files (test_scan_compat)
    assert changed == set(COMPAT_FILES) | {"gpuarray/opt.py", "scan_module/c_code/scan_perform.c", "configdefaults.py",
                                           "gof/cc.py", "gof/op.py"}
    gw = (package / "gpuarray/c_code/dnn_gw.c").read_text()
    assert "theano_det_gw_algo_v7(" in gw and "theano_det_gw_unsupported(" in gw

    status = run_cli("status", "--theano-dir", package, "--json")
    assert status.returncode == 0, status.stderr
    states = {entry["path"]: entry["state"] for entry in json.loads(status.stdout)["files"]}
    assert all(states[path] == "patched" for path in COMPAT_FILES)

    undone = run_cli("unpatch", "--theano-dir", package)
    assert undone.returncode == 0, undone.stderr
    assert snapshot(package) == before
    assert not (package / ".theano-det").exists()


def test_no_compat_leaves_the_cudnn_sources_alone_and_patch_adds_them_later(release_copy):
    package = release_copy("1.0.0")
    before = snapshot(package)
    done = run_cli("patch", "--theano-dir", package, "--no-compat")
    assert done.returncode == 0, done.stderr
    assert "cudnn-compat: left out (--no-compat)" in done.stderr
    after = snapshot(package)
    assert all(after[path] == before[path] for path in COMPAT_FILES)
    assert after["gpuarray/opt.py"] != before["gpuarray/opt.py"]

    status = run_cli("status", "--theano-dir", package)
    assert status.returncode == 0, status.stderr  # left out by choice: not pending
    assert "cudnn-compat: left out (--no-compat)" in status.stderr
    assert "dnn_fwd.c" not in status.stderr
    assert "gpuarray/opt.py: patched" in status.stderr

    again = run_cli("patch", "--theano-dir", package)
    assert again.returncode == 0, again.stderr
    assert "gpuarray/opt.py: already patched" in again.stderr
    assert run_cli("status", "--theano-dir", package).returncode == 0
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert snapshot(package) == before


def test_dry_run_shows_the_v7_heuristic_and_writes_nothing(release_copy):
    package = release_copy("1.0.5")
    before = snapshot(package)
    done = run_cli("patch", "--theano-dir", package, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "+        err = theano_det_fwd_algo_v7(" in done.stdout
    assert "-          CUDNN_CONVOLUTION_FWD_SPECIFY_WORKSPACE_LIMIT, maxfree, &algo);" not in done.stdout  # kept, under #else
    assert "+    if v >= 100000:" in done.stdout
    assert snapshot(package) == before


def test_a_missing_anchor_refuses_everything_and_names_it(release_copy):
    package = release_copy("1.0.5")
    gw = package / "gpuarray/c_code/dnn_gw.c"
    gw.write_text(gw.read_text().replace("cudnnGetConvolutionBackwardFilterAlgorithm(", "my_own_heuristic("))
    before = snapshot(package)
    done = run_cli("patch", "--theano-dir", package)
    assert done.returncode == 3
    assert "gpuarray/c_code/dnn_gw.c is unexpected" in done.stderr
    assert "gw-guess-v7: anchor found 0 time(s), expected 1" in done.stderr
    assert "--no-compat" in done.stderr
    assert snapshot(package) == before and not (package / ".theano-det").exists()

    status = run_cli("status", "--theano-dir", package)
    assert status.returncode == 3 and "dnn_gw.c: not as expected" in status.stderr

    # --force applies no edit to a file whose anchors drifted (all or nothing), and says so.
    forced = run_cli("patch", "--theano-dir", package, "--force", "--dry-run")
    assert forced.returncode == 0, forced.stderr
    assert "gpuarray/c_code/dnn_gw.c: left as it is (nothing that --force could change)" in forced.stderr
    assert "+++ b/gpuarray/c_code/dnn_gw.c" not in forced.stdout
    assert "+++ b/gpuarray/c_code/dnn_gi.c" in forced.stdout

    # Leaving the compat patch out gets the rest done, and the drifted file is left as it is.
    done = run_cli("patch", "--theano-dir", package, "--no-compat")
    assert done.returncode == 0, done.stderr
    assert snapshot(package)["gpuarray/c_code/dnn_gw.c"] == before["gpuarray/c_code/dnn_gw.c"]


def test_a_patched_file_changed_since_is_left_alone_by_unpatch(release_copy):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    fwd = package / "gpuarray/c_code/dnn_fwd.c"
    fwd.write_text(fwd.read_text() + "/* local change */\n")
    done = run_cli("unpatch", "--theano-dir", package)
    assert done.returncode == 3
    assert "gpuarray/c_code/dnn_fwd.c: left alone" in done.stderr
    assert fwd.read_text().endswith("/* local change */\n")
    assert "theano_det_" not in (package / "gpuarray/c_code/dnn_gw.c").read_text()


def test_a_theano_without_the_1_0_layout_is_not_touched(release_copy):
    package = release_copy("0.9.0")  # has gpuarray/dnn.py, but its C sources live elsewhere
    before = snapshot(package)
    done = run_cli("patch", "--theano-dir", package, "--json")
    assert done.returncode == 0, done.stderr
    assert "gpuarray/dnn.py" not in json.loads(done.stdout)["changed"]
    assert snapshot(package)["gpuarray/dnn.py"] == before["gpuarray/dnn.py"]


# What the patched dnn.py does differently, run on the CPU with a stand-in GPU context.
PYTHON_SIDE_PROBE = textwrap.dedent("""
    import json, sys, warnings
    from theano.gpuarray import dnn, type as gpu_type

    class Context(object):
        kind = b"cuda"
        def __init__(self, bin_id):
            self.bin_id = bin_id

    def available(bin_id, version):
        gpu_type._context_reg.pop("probe", None)
        gpu_type._context_reg["probe"] = Context(bin_id)
        dnn.dnn_present.avail, dnn.version.v = True, version
        return [dnn.dnn_available("probe"), dnn.dnn_available.msg]

    def warns(version):
        dnn.version.v = version
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dnn._dnn_check_version()
        return len(caught)

    def rnn(version):
        dnn.dnn_present.avail, dnn.version.v = True, version
        try:
            dnn._RNNDescriptor("probe")
        except RuntimeError as error:
            return str(error)
        return None

    print(json.dumps({
        # pygpu 0.7 on Python 3 gives bin_id as bytes (seen on an H200); str is checked too
        "available": {b: available(b.encode(), 91400) for b in ("sm_35", "sm_90", "sm_100", "sm_120")},
        "available_str": {b: available(b, 91400) for b in ("sm_35", "sm_90", "sm_100", "sm_120")},
        "warns": {v: warns(v) for v in (7605, 8907, 91400, 100100)},
        "rnn": {v: rnn(v) for v in (7605, 8907, 91400)},
    }))
""")


def probe_python_side(package: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(package.parent), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", PYTHON_SIDE_PROBE], env=env, capture_output=True, text=True,
                          timeout=600, cwd=package.parent.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_python_side_of_the_patched_dnn_module(release, release_copy):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    patched, released = probe_python_side(package), probe_python_side(release("1.0.5"))

    # sm_100 and later are read as compute capability 10.0+, not 0.0 ("Device not supported").
    assert released["available"]["sm_100"] == [False, "Device not supported"]
    assert released["available"]["sm_90"] == [True, None]
    assert patched["available"] == patched["available_str"] == {
        "sm_35": [True, None], "sm_90": [True, None],
        "sm_100": [True, None], "sm_120": [True, None],
    }
    # The version warning fires only beyond cuDNN 9 (cuDNN 9.14 is 91400).
    assert released["warns"] == {"7605": 1, "8907": 1, "91400": 1, "100100": 1}
    assert patched["warns"] == {"7605": 0, "8907": 0, "91400": 0, "100100": 1}
    # The cuDNN RNN ops say why they cannot run on cuDNN 8 and 9, before any C is compiled.
    assert released["rnn"] == {"7605": None, "8907": None, "91400": None}
    assert patched["rnn"]["7605"] is None
    for version in ("8907", "91400"):
        assert "cuDNN 8 removed" in patched["rnn"][version] and f"version {version}" in patched["rnn"][version]


def syntax_check(package: Path, *only, cudnn=()) -> dict:
    command = [sys.executable, str(ROOT / "tools" / "cudnn_syntax_check.py"), "--theano-dir", str(package),
               "--cache", str(CACHE / "cudnn-syntax"), "--json"]
    for name in only:
        command += ["--only", name]
    for name in cudnn:
        command += ["--cudnn", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


CONV_OPS = ["conv_fwd_2d", "conv_gw_2d", "conv_gi_2d", "conv_fwd_3d", "conv_gw_3d", "conv_gi_3d"]


@pytest.mark.slow
def test_every_cudnn_op_of_the_patched_theano_compiles_against_cudnn_8_and_9(release, release_copy):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    report = syntax_check(package)
    assert [result["cudnn"] for result in report["results"]] == ["cudnn-8.9.7", "cudnn-9.14.0"]
    for result in report["results"]:
        names = [op["name"] for op in result["ops"]]
        assert set(CONV_OPS + ["conv_desc_2d", "pool_2d", "pool_grad_2d", "batchnorm_train"]) <= set(names)
        assert [op for op in result["ops"] if not op["ok"]] == []
        (rnn,) = result["refused"]
        assert rnn["name"] == "rnn_desc" and "cuDNN 8 removed" in rnn["error"]
    assert report["ok"]

    # The same check on the released sources fails where the H200 (cuDNN 9.14) failed: it can tell.
    released = syntax_check(release("1.0.5"), *CONV_OPS, "rnn_desc", cudnn=["cudnn-9.14.0"])
    assert [result["cudnn"] for result in released["results"]] == ["cudnn-9.14.0"]
    assert not released["ok"]
    for result in released["results"]:
        assert all(not op["ok"] for op in result["ops"])
        errors = {op["name"]: " ".join(op["errors"]) for op in result["ops"]}
        assert "cudnnGetConvolutionForwardAlgorithm" in errors["conv_fwd_2d"]
        assert "CUDNN_CONVOLUTION_BWD_FILTER_SPECIFY_WORKSPACE_LIMIT" in errors["conv_gw_2d"]
        assert "cudnnSetRNNDescriptor" in errors["rnn_desc"]
