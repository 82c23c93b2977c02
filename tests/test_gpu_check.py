"""tools/gpu_check.py (`make gpu-check`): its dry run without a GPU, and how it records steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_cli
from small_tree import snapshot

sys.path.insert(0, str(ROOT / "tools"))

import gpu_check  # noqa: E402

STEPS = ["environment", "scatter-kernel", "incsubtensor-bench", "verify-unpatched", "patch-copy",
         "verify-patched", "cudnn", "conv-bench", "gpu-tests", "clients"]


def test_without_a_gpu_it_checks_that_every_step_can_start_and_exits_4(tmp_path):
    env = dict(os.environ, GPU_REPORT_DIR=str(tmp_path / "report"))
    started = time.time()
    done = subprocess.run([sys.executable, "tools/gpu_check.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 4, done.stderr[-4000:]
    report = json.loads((tmp_path / "report" / "gpu-report.json").read_text())
    assert report["mode"] == "dry run (no GPU)"
    assert report["status"] == "dry run: every step can start", json.dumps(report["steps"], indent=1)[-4000:]
    assert [step["name"] for step in report["steps"]] == STEPS
    client_tests = ROOT / "tests" / "test_clients.py"  # run on the GPU once it has GPU tests
    clients = "passed" if client_tests.is_file() and "mark.gpu" in client_tests.read_text() else "not present"
    for step in report["steps"]:
        assert step["status"] == (clients if step["name"] == "clients" else "passed"), step
        assert step["seconds"] <= step["budget_s"]
    assert 0 < report["wall_s"] <= time.time() - started
    markdown = (tmp_path / "report" / "gpu-report.md").read_text()
    assert "| verify-patched | passed | 0 |" in markdown
    assert "no GPU here: dry run only" in done.stderr


def test_make_gpu_check_runs_the_script_with_the_interpreter_on_path():
    done = subprocess.run(["make", "--no-print-directory", "-n", "gpu-check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python3 tools/gpu_check.py"


def test_a_step_past_its_budget_is_stopped_and_recorded(tmp_path):
    step = gpu_check.Step("hang", "sleeps", [sys.executable, "-c", "import time; time.sleep(60)"], budget=1)
    started = time.time()
    record = gpu_check.run_step(step, deadline=time.time() + 100, dry=False, report_dir=tmp_path)
    assert time.time() - started < 30
    assert record["status"] == "timed out" and record["exit"] is None


def test_a_step_is_not_started_when_the_run_is_out_of_time(tmp_path):
    step = gpu_check.Step("late", "never runs", [sys.executable, "-c", "raise SystemExit(0)"], budget=60)
    record = gpu_check.run_step(step, deadline=time.time() + 2, dry=False, report_dir=tmp_path)
    assert record["status"] == "not started" and "out of time" in record["note"]


def test_the_report_is_written_after_every_step_even_a_failed_one(tmp_path):
    report = gpu_check.Report(tmp_path, "GPU")
    failing = gpu_check.Step("fails", "exits 3", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], 60)
    report.add(gpu_check.run_step(failing, time.time() + 100, False, tmp_path))
    document = json.loads((tmp_path / "gpu-report.json").read_text())
    assert document["status"] == "running"
    (step,) = document["steps"]
    assert step["status"] == "failed" and step["exit"] == 3 and "boom" in step["output_tail"]
    assert "| fails | failed | 3 |" in (tmp_path / "gpu-report.md").read_text()


@pytest.mark.parametrize("expect,code,ops,stable,problem", [
    (1, 1, ["GpuAdvancedIncSubtensor1_dev20"], False, None),
    (1, 0, ["GpuAdvancedIncSubtensor1"], True, "verify exited 0, expected 1"),
    (1, 1, ["GpuAdvancedIncSubtensor1"], False, "compiled no _dev20 op"),
    (0, 0, ["GpuAdvancedIncSubtensor1"], True, None),
    (0, 0, ["GpuAdvancedIncSubtensor1_dev20"], False, "still compiles _dev20"),
])
def test_verify_expectations(expect, code, ops, stable, problem):
    document = {"checks": [{"name": "embedding_grad", "ops": ops, "bitwise_stable": stable}]}
    problems = gpu_check.verify_expectation(expect)(code, document)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in text for text in problems), problems


def test_an_expected_nonzero_exit_passes_and_an_unexpected_document_fails(tmp_path):
    document = json.dumps({"checks": [{"name": "embedding_grad", "ops": ["X_dev20"], "bitwise_stable": False}]})
    command = [sys.executable, "-c", "import sys; print('Theano says hi'); print(%r); sys.exit(1)" % document]
    step = gpu_check.Step("verify", "stock", command, 60, check=gpu_check.stdout_json_check(
        gpu_check.verify_expectation(1)))
    assert gpu_check.run_step(step, time.time() + 100, False, tmp_path)["status"] == "passed"
    step.check = gpu_check.stdout_json_check(gpu_check.verify_expectation(0))
    record = gpu_check.run_step(step, time.time() + 100, False, tmp_path)
    assert record["status"] == "failed" and record["problems"]


def bench_document(ours_seconds, launches, host="C"):
    def sizes(seconds, counted):
        return {"1000": {"seconds": seconds, "stable": True, "launches_per_call": counted, "host": host}}
    return {"planned_launches": {"1000": 2}, "columns": [
        {"label": "`_dev20` (atomicAdd)", "sizes": {"1000": {"seconds": 1e-4, "stable": False}}},
        {"label": "theano-det `GpuDetAdvancedIncSubtensor1`", "sizes": sizes(ours_seconds, launches)}]}


def test_the_benchmark_judge_checks_launches_and_the_dev20_target():
    assert gpu_check.bench_judge(0, bench_document(5e-5, 2)) == []  # _dev20's instability is expected
    assert gpu_check.bench_judge(0, bench_document(5e-5, 8)) == [
        "theano-det `GpuDetAdvancedIncSubtensor1`: 8 launches per call at K=1000, the plan has 2"]
    (problem,) = gpu_check.bench_judge(0, bench_document(2e-4, 2))
    assert problem.startswith("theano-det `GpuDetAdvancedIncSubtensor1` slower than _dev20 at K=1000 (0.2 ms")
    # the op's time must be its C code's: Theano falling back to perform is a failure
    assert gpu_check.bench_judge(0, bench_document(5e-5, 2, host="Python")) == [
        "theano-det `GpuDetAdvancedIncSubtensor1` ran its Python launches at K=1000, not its C code"]


def test_the_conv_judge_fails_a_configuration_that_ran_on_the_cpu():
    # The first H200 run: the patched copy could not open the GPU, so both cuDNN
    # configurations silently trained with the CPU's CorrMM (218 ms a step).
    report = json.loads((ROOT / "docs/results/2026-11-30-h200/run-1-full/gpu-report.json").read_text())
    (step,) = [step for step in report["steps"] if step["name"] == "conv-bench"]
    document = step["details"]
    # that run's benchmark did not yet say whether Theano had the GPU: taken as no
    assert gpu_check.conv_judge(0, document) == [
        "cudnn-default: Theano had no GPU (ran CorrMM, CorrMM_gradInputs, CorrMM_gradWeights)",
        "cudnn-deterministic: Theano had no GPU (ran CorrMM, CorrMM_gradInputs, CorrMM_gradWeights)",
        "corrmm: Theano had no GPU (ran GpuCorrMM, GpuCorrMM_gradInputs, GpuCorrMM_gradWeights)"]
    for name in document:
        document[name]["gpu"] = True
    assert gpu_check.conv_judge(0, document) == [
        "cudnn-default: ran CorrMM, CorrMM_gradInputs, CorrMM_gradWeights, not GpuDnnConv*",
        "cudnn-deterministic: ran CorrMM, CorrMM_gradInputs, CorrMM_gradWeights, not GpuDnnConv*"]
    document["cudnn-default"]["conv_ops"] = ["GpuDnnConv", "GpuDnnConvDesc", "GpuDnnConvGradI", "GpuDnnConvGradW"]
    document["cudnn-deterministic"]["error"] = "worker exited 1"
    assert gpu_check.conv_judge(0, document) == ["cudnn-deterministic: worker exited 1"]


def test_the_copies_of_a_patched_theano_are_released_ones(release, release_copy, tmp_path, monkeypatch):
    # e.g. after `make demo`, which patches the venv's Theano, or on a GPU machine patched before
    installed = release_copy("1.0.5")
    done = run_cli("patch", "--theano-dir", installed, "--no-config", "--json")
    assert done.returncode == 0, done.stderr
    changed = json.loads(done.stdout)["changed"]
    assert "gpuarray/opt.py" in changed and "gpuarray/dnn.py" in changed
    before = snapshot(installed)
    monkeypatch.setattr(gpu_check, "theano_package", lambda: installed)
    copy = gpu_check.copy_theano(tmp_path / "copy")
    released = release("1.0.5")
    for relative in changed:
        assert (copy / relative).read_bytes() == (released / relative).read_bytes(), relative
    assert snapshot(installed) == before  # the installed one, its record included, is left as it was
    assert not (copy / ".theano-det").exists()
    done = run_cli("patch", "--theano-dir", copy, "--no-config")  # what the patch-copy step does
    assert done.returncode == 0, done.stderr


def test_a_patched_theano_whose_record_lost_a_backup_gives_no_copy(release_copy, tmp_path, monkeypatch):
    installed = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", installed, "--no-config").returncode == 0
    (installed / "gpuarray" / "opt.py").write_text("# edited by hand after the patch\n")
    monkeypatch.setattr(gpu_check, "theano_package", lambda: installed)
    with pytest.raises(RuntimeError, match="gpuarray/opt.py"):
        gpu_check.copy_theano(tmp_path / "copy")
