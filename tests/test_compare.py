"""`theano-det compare`: real `verify --save` documents made on this CPU, and edited copies
standing for other machines of a fleet (another GPU, cuDNN, settings, Theano)."""

from __future__ import annotations

import copy
import json
import sys
import subprocess

import pytest

from conftest import module_env, on_patched_theano, run_cli
from theano_det.verification import comparison

CHECKS = ("--check", "mrg_uniform", "--check", "maxpool2d")  # two quick checks


def saved_document(folder, name, patched_theano, flags=""):
    """A verify document made by a run on the patched copy of the venv's Theano."""
    path = folder / name
    env = on_patched_theano(module_env(folder / "home", flags), patched_theano)
    done = subprocess.run([sys.executable, "-m", "theano_det", "verify", "--repeat", "2", *CHECKS,
                           "--save", str(path)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def real(tmp_path_factory, patched_theano):
    """Two runs of verify on this machine (Theano's default floatX, float64), and one in float32."""
    folder = tmp_path_factory.mktemp("fleet")
    return {"a": saved_document(folder, "a.json", patched_theano),
            "b": saved_document(folder, "b.json", patched_theano),
            "float32": saved_document(folder, "f32.json", patched_theano, "floatX=float32")}


def on_gpu(document, name="NVIDIA H200", architecture="sm_90", cudnn="9.1.0", runtime="12.4"):
    """The same document as if made on a GPU machine (what a fleet node writes)."""
    edited = copy.deepcopy(document)
    edited["gpu"] = name
    edited["environment"].update(gpu=name, gpu_architecture=architecture, cuda_runtime=runtime)
    edited["environment"]["cudnn"].update(version=cudnn, used_by_theano=cudnn is not None)
    edited["environment"]["theano"]["backend"] = "gpuarray"
    return edited


def check(document, name):
    (found,) = [entry for entry in document["checks"] if entry["name"] == name]
    return found


def write(folder, **documents):
    paths = []
    for name, document in documents.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(document))
        paths.append(path)
    return paths


def compare(*paths):
    done = run_cli("compare", "--json", *paths)
    return done, json.loads(done.stdout) if done.stdout.strip() else None


def test_two_runs_on_one_machine_reproduce_each_other(real, tmp_path):
    assert [entry["sha256"] for entry in real["a"]["checks"]] == [entry["sha256"] for entry in real["b"]["checks"]]
    done, result = compare(*write(tmp_path, a=real["a"], b=real["b"]))
    assert done.returncode == 0, done.stderr
    assert result["agrees"] is True and result["not_comparable"] == []
    (group,) = result["groups"]
    assert [entry["name"] for entry in group["checks"]] == ["maxpool2d", "mrg_uniform"]
    assert all(len(entry["same_bits"]) == 1 and len(entry["same_bits"][0]) == 2 for entry in group["checks"])
    assert "same bits on 2 machines" in done.stderr
    assert "verdict: every group of comparable machines reproduces each other bit for bit" in done.stderr


def test_a_machine_with_other_bits_is_named_check_by_check(real, tmp_path):
    spoiled = copy.deepcopy(real["b"])
    check(spoiled, "maxpool2d")["sha256"] = "0" * 64
    a, b, c = write(tmp_path, a=real["a"], b=real["b"], c=spoiled)
    done, result = compare(a, b, c)
    assert done.returncode == 1, done.stderr
    checks = {entry["name"]: entry["same_bits"] for entry in result["groups"][0]["checks"]}
    assert checks == {"mrg_uniform": [[str(a), str(b), str(c)]], "maxpool2d": [[str(a), str(b)], [str(c)]]}
    assert f"DIFFERENT bits: {a}, {b} | {c}" in done.stderr
    assert "comparable machines DISAGREE: group 1 (maxpool2d)" in done.stderr


def test_machines_that_cannot_be_compared_are_listed_with_the_reason(real, tmp_path):
    h200 = on_gpu(real["a"])
    a100 = on_gpu(real["a"], "NVIDIA A100", "sm_80")
    a100_other_bits = copy.deepcopy(a100)
    check(a100_other_bits, "mrg_uniform")["sha256"] = "2" * 64
    old_cudnn = on_gpu(real["a"], cudnn="8.9.7")
    no_cudnn = on_gpu(real["a"], cudnn=None)
    old_theano = copy.deepcopy(real["a"])
    old_theano["environment"]["theano"]["version"] = "0.9.0"
    paths = write(tmp_path, cpu=real["a"], f32=real["float32"], h200=h200, a100=a100, a100b=a100_other_bits,
                  cudnn8=old_cudnn, nocudnn=no_cudnn, theano09=old_theano)
    done, result = compare(*paths)
    assert done.returncode == 1, done.stderr  # the two A100s disagree
    assert [group["machines"] for group in result["groups"] if not group["agrees"]] == [
        [str(tmp_path / "a100.json"), str(tmp_path / "a100b.json")]]
    reasons = {(first[0], second[0]): apart for first, second, apart in
               ((entry["machines"], entry["with"], entry["reasons"]) for entry in result["not_comparable"])}
    name = {path.stem: str(path) for path in paths}
    assert reasons[name["cpu"], name["f32"]] == ["different settings: floatX float64 vs float32"]
    assert reasons[name["cpu"], name["h200"]] == ["different device (CPU vs GPU NVIDIA H200 (sm_90))"]
    assert reasons[name["h200"], name["a100"]] == [
        "different GPU architecture (NVIDIA H200 (sm_90) vs NVIDIA A100 (sm_80))"]
    assert reasons[name["h200"], name["cudnn8"]] == ["different cuDNN (9.1.0 vs 8.9.7)"]
    assert reasons[name["h200"], name["nocudnn"]] == ["cuDNN on one machine, not the other"]
    assert reasons[name["cpu"], name["theano09"]] == ["different Theano (1.0.5 vs 0.9.0)"]
    assert reasons[name["h200"], name["theano09"]] == ["different device (GPU NVIDIA H200 (sm_90) vs CPU)",
                                                       "different Theano (1.0.5 vs 0.9.0)"]
    assert "cannot be compared:" in done.stderr and "alone: no other machine has this setup" in done.stderr

    # Without the first A100, the other one's bits differ from the H200's, but another
    # architecture may: every comparable pair agrees, so exit 0.
    done, result = compare(*[path for path in paths if path.stem != "a100"])
    assert done.returncode == 0, done.stderr


def test_a_second_run_in_another_device_name_is_still_comparable(real):
    """cuda0 on one node, cuda1 on another: the same setup."""
    first, second = on_gpu(real["a"]), on_gpu(real["b"])
    first["environment"]["settings"]["device"], second["environment"]["settings"]["device"] = "cuda0", "cuda1"
    assert comparison.differences(first, second) == []


def test_two_gpu_models_of_one_architecture_are_not_compared(real):
    """H100 and H200 are both sm_90, but cuBLAS may choose other kernels for other SM counts."""
    assert comparison.differences(on_gpu(real["a"], "NVIDIA H100"), on_gpu(real["a"])) == [
        "different GPU model (NVIDIA H100 (sm_90) vs NVIDIA H200 (sm_90))"]
    without_architecture = on_gpu(real["a"], architecture=None)  # a document of an older theano-det
    assert comparison.describe(without_architecture).startswith("NVIDIA H200, CUDA 12.4")


def test_checks_on_other_inputs_or_not_run_are_notes_not_disagreements(real, tmp_path):
    newer = copy.deepcopy(real["b"])
    check(newer, "mrg_uniform")["inputs_sha256"] = "f" * 64
    check(newer, "maxpool2d")["sha256"] = None
    done, result = compare(*write(tmp_path, a=real["a"], newer=newer))
    assert done.returncode == 0, done.stderr
    notes = {entry["name"]: entry["notes"] for entry in result["groups"][0]["checks"]}
    assert notes["mrg_uniform"] == [f"{tmp_path / 'newer.json'}: not comparable (different inputs: "
                                    "another theano-det version?)"]
    assert notes["maxpool2d"] == [f"not run on {tmp_path / 'newer.json'}"]


def test_a_document_where_nothing_ran_cannot_be_compared(real, tmp_path):
    cannot_run = {"status": "cannot_run", "environment": None, "checks": []}
    done, result = compare(*write(tmp_path, a=real["a"], none=cannot_run))
    assert done.returncode == 0, done.stderr
    assert f"cannot be compared: {tmp_path / 'none.json'}: no check ran there" in done.stderr
    assert "verdict: no two machines could be compared" in done.stderr


def test_bad_files_and_usage(real, tmp_path):
    (good,) = write(tmp_path, good=real["a"])
    for text, message in [("{", "cannot read"), ("[]", "not a verify document"),
                          ('{"checks": [1]}', "not a verify document"),
                          ('{"checks": [], "environment": 5}', "not a verify document")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        done = run_cli("compare", good, bad)
        assert done.returncode == 3 and message in done.stderr and "Traceback" not in done.stderr, text
    done = run_cli("compare", good, tmp_path / "missing.json")
    assert done.returncode == 3 and "cannot read" in done.stderr and "Traceback" not in done.stderr
    assert run_cli("compare", good).returncode == 2
    assert run_cli("compare").returncode == 2
    assert run_cli("compare", good, good).returncode == 2


def test_verify_compare_uses_the_same_rules(real):
    """verify --compare FILE: other bits on another setup are not a failure, on the same setup they are."""
    other = copy.deepcopy(real["b"])
    check(other, "mrg_uniform")["sha256"] = "0" * 64
    assert comparison.compare(real["a"], real["b"]).reproduces
    assert not comparison.compare(real["a"], other).reproduces
    elsewhere = comparison.compare(real["a"], on_gpu(other))
    reason = "different device (CPU vs GPU NVIDIA H200 (sm_90))"
    assert not elsewhere.reproduces and elsewhere.not_comparable == [reason]
    assert comparison.comparison_lines(elsewhere, "x.json")[0] == (
        f"compared with x.json: the machines cannot be compared: {reason}")
