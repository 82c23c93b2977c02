"""`theano-det verify` on this machine's CPU with the test environment's Theano 1.0.5.

The probe runs in a subprocess, as for users; its pure parts (status, cuDNN checks,
comparison) are also tested in process. Most runs use a patched copy of the venv's Theano,
as users run verify after `patch` (its compat patches keep what one process compiled for
the next); one runs on the venv's unpatched Theano.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import first_on_pythonpath, module_env, on_patched_theano, run_cli
from theano_det.verification import comparison
from theano_det.verification import verify
from theano_det.errors import CannotRun
from theano_det.target import Target
from theano_det.intarget import verify_probe

INTARGET = Path(verify_probe.__file__).parent
ENVIRONMENT_KEYS = {"python", "theano", "numpy", "pygpu", "libgpuarray", "cuda_driver", "cuda_runtime",
                    "cudnn", "settings"}
CHECK_KEYS = {"name", "ops", "bitwise_stable", "matches_reference", "seconds", "sha256"}
FAST_CHECK = ("--check", "mrg_uniform")  # the quickest to compile


def verify_json(*args, env=None):
    done = run_cli("verify", "--json", "--repeat", "2", *args, env=env)
    document = json.loads(done.stdout) if done.stdout.strip() else None
    return done, document


@pytest.fixture(scope="module")
def every_check(tmp_path_factory, patched_theano):
    """(process, document, saved file) of one verify of every check, in float32 as on GPUs
    (test_compare runs checks in Theano's default float64)."""
    folder = tmp_path_factory.mktemp("verify-every-check")
    saved = folder / "here.json"
    env = on_patched_theano(module_env(folder / "home", "floatX=float32"), patched_theano)
    done, document = verify_json("--save", saved, env=env)
    return done, document, saved


@pytest.mark.slow
def test_verify_runs_every_check_on_the_cpu(every_check):
    done, document, saved = every_check
    assert done.returncode == 0, done.stderr
    assert document["status"] == "deterministic" and document["exit_code"] == 0
    assert document["gpu"] is None and "No GPU was tested" in document["gpu_note"]
    assert "GPU: none. No GPU was tested" in done.stderr and "(CPU only: no GPU was tested)" in done.stderr
    environment = document["environment"]
    assert ENVIRONMENT_KEYS <= set(environment)
    assert environment["theano"]["version"] == "1.0.5" and environment["theano"]["backend"] == "cpu"
    assert {"deterministic", "dnn.conv.algo_bwd_filter", "dnn.conv.algo_bwd_data",
            "optimizer_excluding"} <= set(environment["settings"])
    assert [check["name"] for check in document["checks"]] == list(verify_probe.CHECK_NAMES)
    for check in document["checks"]:
        assert CHECK_KEYS <= set(check), check["name"]
        assert check["bitwise_stable"] is True and check["matches_reference"] is True, check
        assert len(check["sha256"]) == 64 and check["findings"] == []
    ops = {check["name"]: check["key_ops"] for check in document["checks"]}
    assert ops["embedding_grad"] == ["AdvancedIncSubtensor1"]
    assert "CorrMM_gradWeights" in ops["conv2d"] and "MaxPoolGrad" in ops["maxpool2d"]
    assert json.loads(saved.read_text()) == document
    for line in ("embedding_grad", "stable x2", "status: deterministic"):
        assert line in done.stderr


def test_verify_under_run_is_not_reseeded_by_runs_bootstrap():
    """run's bootstrap reseeds streams by where they are made; the probe's check and its
    float64 reference must still draw from the same seed (they did not: exit 1). On the
    venv's unpatched Theano."""
    env = dict(os.environ, THEANO_FLAGS=os.environ["THEANO_FLAGS"] + ",floatX=float32")
    done = subprocess.run([sys.executable, "-m", "theano_det", "run", "--seed", "3", "--",
                           sys.executable, "-m", "theano_det", "verify", "--json", "--repeat", "2", *FAST_CHECK],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    (check,) = json.loads(done.stdout)["checks"]
    assert check["matches_reference"] is True


@pytest.mark.usefixtures("patched_environ")
def test_verify_compare_says_whether_outputs_are_reproduced(tmp_path):
    saved = tmp_path / "there.json"
    done, document = verify_json(*FAST_CHECK, "--save", saved)
    assert done.returncode == 0, done.stderr

    done, document = verify_json(*FAST_CHECK, "--compare", saved)
    assert done.returncode == 0, done.stderr
    assert document["compare"]["reproduces"] is True
    assert "reproduces its outputs bit for bit" in done.stderr

    other = json.loads(saved.read_text())
    other["checks"][0]["sha256"] = "0" * 64
    saved.write_text(json.dumps(other))
    done, document = verify_json(*FAST_CHECK, "--compare", saved)
    assert done.returncode == 1, done.stderr
    assert document["status"] == "deterministic" and document["compare"]["reproduces"] is False
    assert document["compare"]["checks"] == [{"name": "mrg_uniform", "result": "different bits"}]
    assert "does NOT reproduce" in done.stderr


@pytest.mark.parametrize("selftest, failing", [
    ("nondeterministic", "bitwise_stable"),
    ("wrong", "matches_reference"),
])
@pytest.mark.usefixtures("patched_environ")
def test_an_injected_fault_makes_verify_fail(monkeypatch, selftest, failing):
    monkeypatch.setenv(verify_probe.SELFTEST_VARIABLE, selftest)
    done, document = verify_json(*FAST_CHECK)
    assert done.returncode == 1, done.stderr
    assert document["status"] == "nondeterministic"
    checks = {check["name"]: check for check in document["checks"]}
    assert checks["mrg_uniform"][failing] is True
    assert checks[f"selftest_{selftest}"][failing] is False
    assert checks[f"selftest_{selftest}"]["key_ops"] == ["SelfTestSpoil"]


def test_require_gpu_without_a_gpu_exits_4():
    done, document = verify_json("--require-gpu")
    assert done.returncode == 4, done.stderr
    assert document["status"] == "cannot_run" and document["checks"] == []
    assert "no usable GPU" in done.stderr and "hint: run on a machine with an NVIDIA GPU" in done.stderr


@pytest.mark.parametrize("variable, command", [
    ("THEANO_DET_IMAGE", "docker run --gpus all"),  # set by theano-det's image
    ("APPTAINER_CONTAINER", "apptainer run --nv"),  # set by Apptainer in every container
])
def test_require_gpu_in_a_container_hints_at_the_runtime_flag(monkeypatch, variable, command):
    """In the image the device is configured already; what is missing is the GPU itself."""
    monkeypatch.setenv("THEANO_DET_IMAGE", "1")
    monkeypatch.setenv(variable, "/images/theano-det.sif")
    done, document = verify_json("--require-gpu")
    assert done.returncode == 4, done.stderr
    assert command in document["hint"] and "hint: this container was started without" in done.stderr
    assert "device=cuda0" not in document["hint"]


def test_an_interpreter_without_theano_exits_4(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    done = run_cli("verify", "--python", tmp_path / "bare" / "bin" / "python")
    assert done.returncode == 4
    assert "no Theano is importable" in done.stderr and "Traceback" not in done.stderr


def test_a_theano_that_does_not_import_exits_4_with_a_hint(release):
    """Theano 1.0.5 asks numpy for blas_opt_info on import; numpy 1.23's wheels lack it.
    The released Theano, first on PYTHONPATH: the venv's may be patched (`make demo`),
    and the compat patch answers that question."""
    flags = ",".join(part for part in os.environ["THEANO_FLAGS"].split(",") if not part.startswith("blas."))
    env = first_on_pythonpath(dict(os.environ, THEANO_FLAGS=flags), release("1.0.5").parent)
    done, document = verify_json(env=env)
    assert done.returncode == 4
    assert document["status"] == "cannot_run" and "blas_opt_info" in document["summary"]
    assert "hint: this numpy does not describe its BLAS" in done.stderr and "Traceback" not in done.stderr


def test_bad_inputs_get_a_message_and_their_exit_code(tmp_path):
    not_a_document = tmp_path / "other.json"
    not_a_document.write_text("{}")
    done = run_cli("verify", "--compare", not_a_document)
    assert done.returncode == 3 and "not a verify document" in done.stderr
    assert run_cli("verify", "--compare", tmp_path / "missing.json").returncode == 2
    done = run_cli("verify", "--save", tmp_path / "no" / "such" / "folder.json")
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert run_cli("verify", "--repeat", "1").returncode == 2
    assert run_cli("verify", "--check", "nothing").returncode == 2
    checks_not_objects = tmp_path / "odd.json"
    checks_not_objects.write_text('{"checks": [5]}')
    done = run_cli("verify", "--compare", checks_not_objects)
    assert done.returncode == 3 and "not a verify document" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.usefixtures("patched_environ")
def test_a_save_file_that_cannot_be_written_is_refused_without_a_traceback():
    # /proc exists and is a folder, but no file can be created in it (not even by root)
    done = run_cli("verify", "--repeat", "2", *FAST_CHECK, "--save", "/proc/theano-det-verify.json")
    assert done.returncode == 3, done.stderr
    assert "cannot write" in done.stderr and "Traceback" not in done.stderr


# --- in process ----------------------------------------------------------------------

def check_result(name, stable=True, matches=True, findings=(), runnable=True, error=None):
    result = verify_probe.new_result(name, name)
    result.update(bitwise_stable=stable, matches_reference=matches, findings=list(findings), runnable=runnable)
    if error:
        result["error"] = error
    return result


def test_status_of_a_set_of_results():
    summarize = verify_probe.summarize
    assert summarize([check_result("a"), check_result("b", runnable=False)], 5)[0] == "deterministic"
    assert summarize([check_result("a", stable=False)], 5) == (
        "nondeterministic", "not bitwise stable over 5 runs: a")
    assert summarize([check_result("a", matches=False)], 5)[0] == "nondeterministic"
    assert summarize([check_result("a", findings=[{"rule": "x"}])], 5)[0] == "nondeterministic"
    assert summarize([check_result("a"), check_result("b", stable=None, error="boom")], 5)[0] == "error"
    assert summarize([check_result("a", stable=False), check_result("b", error="boom")], 5)[0] == (
        "nondeterministic")
    assert summarize([], 5)[0] == "error"


def test_compare_outcomes():
    def document(**checks):
        return {"checks": [dict(name=name, dtype="float32", inputs_sha256="i", sha256=sha)
                           for name, sha in checks.items()]}

    ours = document(a="1", b="2")
    assert comparison.compare(ours, document(a="1", b="2")).reproduces
    assert not comparison.compare(ours, document(a="1", b="3")).reproduces
    assert comparison.compare(ours, document(a="1", c="9")).results == [("a", "same bits"), ("c", "not run here")]
    float64 = {"checks": [dict(name="a", dtype="float64", inputs_sha256="i", sha256="1")]}
    compared = comparison.compare(ours, float64)
    assert not compared.reproduces and compared.results[0][1].startswith("not comparable")


@pytest.mark.parametrize("number, text, major", [(7605, "7.6.5", 7), (8907, "8.9.7", 8), (91400, "9.14.0", 9)])
def test_cudnn_versions(number, text, major):
    assert verify_probe.format_cudnn_version(number) == text
    assert verify_probe.cudnn_major(number) == major


@pytest.mark.parametrize("release_name, folder, expected", [
    ("1.0.5", "gpuarray", ["c_code/dnn_fwd.c"]),
    ("1.0.0", "gpuarray", ["c_code/dnn_fwd.c"]),
    ("pymc-1.1.2", "gpuarray", ["c_code/dnn_fwd.c"]),
    ("0.9.0", "sandbox/cuda", ["dnn_fwd.c"]),  # cudnn_helper.h calls it under #ifndef CUDNN_VERSION
    ("0.9.0", "gpuarray", ["dnn_fwd.c"]),
])
def test_the_removed_cudnn_call_is_found_in_the_released_sources(release, release_name, folder, expected):
    assert verify_probe.files_calling_removed_cudnn_api(str(release(release_name) / folder)) == expected


def test_after_the_cudnn_compat_patch_no_live_call_is_left(release_copy):
    package = release_copy("1.0.5")
    done = run_cli("patch", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert verify_probe.REMOVED_CUDNN_CALL.search((package / "gpuarray/c_code/dnn_fwd.c").read_text())
    assert verify_probe.files_calling_removed_cudnn_api(str(package / "gpuarray")) == []


@pytest.mark.parametrize("source, calls", [
    ("cudnnGetConvolutionForwardAlgorithm(h);", 1),
    ("#if CUDNN_MAJOR >= 7\n x_v7(h);\n#else\n cudnnGetConvolutionForwardAlgorithm(h);\n#endif", 0),
    ("#if CUDNN_MAJOR >= 9\n x_v7(h);\n#else\n cudnnGetConvolutionForwardAlgorithm(h);\n#endif", 1),
    ("#if CUDNN_MAJOR < 8\n cudnnGetConvolutionForwardAlgorithm(h);\n#endif", 0),
    ("#ifndef CUDNN_VERSION\n cudnnGetConvolutionForwardAlgorithm(h);\n#endif", 0),
    ("#if defined(CUDNN_VERSION) && CUDNN_VERSION < 4000\n#ifdef X\n#endif\n"
     " cudnnGetConvolutionForwardAlgorithm(h);\n#endif\ncudnnGetConvolutionForwardAlgorithm(h);", 1),
    ("#ifdef DEBUG\n cudnnGetConvolutionForwardAlgorithm(h);\n#endif", 1),
    ("cudnnGetConvolutionForwardAlgorithm_v7(h);", 0),
])
def test_which_calls_a_cudnn_8_build_compiles(source, calls):
    assert verify_probe.live_removed_cudnn_calls(source) == calls


def cudnn9_environment():
    problem = ("Theano 1.0.5's cuDNN convolution code (c_code/dnn_fwd.c) calls cudnnGetConvolutionForwardAlgorithm, "
               "which cuDNN 8 removed: every cuDNN convolution fails to compile against cuDNN 9.14.0")
    return {"cudnn": {"version": "9.14.0", "version_number": 91400, "used_by_theano": True, "problem": problem}}


def test_with_a_cudnn_theano_cannot_compile_against_the_cudnn_checks_run_without_it():
    """The Theano 1.0.5 + cuDNN 9 path, as far as a CPU runs it: the cuDNN variant is
    reported not runnable with reason and fix, the check runs with cuDNN excluded."""
    theano = importlib.import_module("theano")
    environment = cudnn9_environment()
    blocked = verify_probe.cudnn_blocked(environment)
    assert "cuDNN 8 removed" in blocked["reason"] and "dnn.enabled=False" in blocked["fix"]
    (conv2d,) = [check for check in verify_probe.CHECKS if check.name == "conv2d"]
    skipped, ran = verify_probe.run_with_cudnn_fallback(theano, conv2d, 2, environment, blocked)
    assert skipped["name"] == "conv2d (cuDNN)" and skipped["runnable"] is False
    assert skipped["reason"] == blocked["reason"] and skipped["fix"] == blocked["fix"]
    assert ran["name"] == "conv2d" and ran["cudnn"] == "excluded" and ran["bitwise_stable"] is True
    assert verify_probe.summarize([skipped, ran], 2)[0] == "deterministic"
    lines = "\n".join(verify.report_lines({"checks": [skipped, ran], "repeat": 2, "status": "deterministic"}))
    assert "not runnable: conv2d (cuDNN): Theano 1.0.5's cuDNN convolution code" in lines


def test_the_report_names_cudnn_algorithms_and_findings():
    check = verify_probe.new_result("conv3d_grad", "conv3d gradients")
    check.update(ops=["GpuDnnConvGradW"], key_ops=["GpuDnnConvGradW"], cudnn="used", bitwise_stable=True,
                 matches_reference=True, max_abs_diff=1e-6, seconds=1.0,
                 cudnn_algorithms=[{"op": "GpuDnnConvGradW", "algo": "deterministic", "ndim": 5}],
                 findings=[{"op": "GpuDnnConvGradW{algo='deterministic'}", "certainty": "certain",
                            "line": "probe.py:1", "inside": None, "why": "No algorithm.",
                            "fix": "Not fixable by flags: exclude it."}])
    lines = verify.report_lines({"checks": [check], "repeat": 3, "status": "nondeterministic", "summary": "x"})
    assert "cuDNN algorithms in conv3d_grad: GpuDnnConvGradW deterministic" in lines
    assert any(line.startswith("finding in conv3d_grad:") and "Fix: Not fixable by flags" in line
               for line in lines)
    assert any(line.startswith("conv3d_grad") and "stable x3" in line and "used" in line for line in lines)


def test_a_python_2_target_is_told_verify_needs_python_3(tmp_path):
    old = Target(tmp_path, "Theano", "0.7.0", python="/usr/bin/python2.7", python_version="2.7.18")
    with pytest.raises(CannotRun, match="needs 3.5 or newer"):
        verify.require_probe_python(old)
    verify.require_probe_python(Target(tmp_path, "Theano", "1.0.5", python="py", python_version="3.5.10"))


def test_cudnn_is_not_blocked_when_theano_does_not_use_it():
    environment = cudnn9_environment()
    environment["cudnn"]["used_by_theano"] = False
    assert verify_probe.cudnn_blocked(environment) is None


@pytest.mark.parametrize("name", ["verify_probe.py", "graph_audit.py"])
def test_in_target_files_are_python_3_5_and_need_no_theano_det(name):
    vermin = Path(sys.executable).parent / "vermin"
    done = subprocess.run([str(vermin), "-t=3.5-", "--no-tips", "--violations", str(INTARGET / name)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    source = (INTARGET / name).read_text()
    tree = ast.parse(source, feature_version=(3, 5))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"numpy", "theano", "graph_audit"}, imported


def scan_c_loop_builds_here() -> bool:
    """Theano <= 1.0.5's scan_perform.c (Cython 0.28) includes a header Python 3.11 removed."""
    import theano

    source = Path(theano.__file__).parent / "scan_module" / "c_code" / "scan_perform.c"
    return sys.version_info < (3, 11) or '#include "longintrepr.h"' not in source.read_text()


@pytest.mark.slow
def test_the_recurrent_check_runs_scan_with_dropout_and_says_which_loop_ran(every_check):
    done, document, _ = every_check
    assert done.returncode == 0, done.stderr
    (check,) = [check for check in document["checks"] if check["name"] == "rnn_dropout"]
    assert check["dtype"] == "float32"
    assert check["bitwise_stable"] is True and check["matches_reference"] is True, check
    assert check["key_ops"] == ["Scan", "mrg_uniform"] and check["findings"] == []
    # Theano caches scan's compiled loop by version only: one built by a patched copy of this
    # Theano (tests/test_clients.py) in the shared compile dir serves the unpatched one too.
    if check["note"] != "scan loop: C (scan_perform)":
        assert not scan_c_loop_builds_here()
        assert check["note"].startswith("scan loop: Python (Scan.execute")
        assert "longintrepr.h" in check["note"]
    assert f"rnn_dropout: {check['note']}" in done.stderr
