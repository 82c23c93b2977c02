"""`theano-det trace` and `theano-det diff` on real Theano 1.0.5 runs (CPU).

The traced programs are in trace_programs/. Each run costs seconds of Theano
start-up and compilation, so the runs are made once per module and shared. They run
on the patched copy of the venv's Theano (conftest.on_patched_theano), as users'
programs run after `patch`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import module_env, on_patched_theano, run_cli
from theano_det.tracing import diff as trace_diff
from theano_det.tracing import records as trace_format
from theano_det.tracing import launch as trace_run

PROGRAMS = Path(__file__).resolve().parent / "trace_programs"
MLP = PROGRAMS / "mlp.py"
SCAN = PROGRAMS / "scan_rnn.py"


def line_of(path: Path, marker: str) -> str:
    """'file:line' of the line holding `marker` (what the trace must name)."""
    (number,) = [n for n, text in enumerate(path.read_text().splitlines(), start=1) if marker in text]
    return f"{path}:{number}"


class Runs:
    """Traces made on demand, once per module."""

    def __init__(self, folder: Path, patched_theano: Path):
        self.folder = folder
        self.patched_theano = patched_theano
        self.made = {}

    def env(self, flags="") -> dict:
        return on_patched_theano(module_env(self.folder / "home", flags), self.patched_theano)

    def trace(self, name, *script, seed=1, options=(), flags=""):
        if name not in self.made:
            out = self.folder / f"{name}.trace"
            done = run_cli("trace", "--out", out, "--seed", seed, *options, "--", sys.executable, *script,
                           env=self.env(flags))
            assert done.returncode == 0, done.stderr
            self.made[name] = (out, done)
        return self.made[name][0]

    def stdout(self, name):
        return self.made[name][1].stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory, patched_theano):
    return Runs(tmp_path_factory.mktemp("traces"), patched_theano)


def diff(*args):
    return run_cli("diff", *args)


def diff_json(*args) -> tuple:
    done = diff("--json", *args)
    return done.returncode, json.loads(done.stdout)


def test_the_same_script_with_the_same_seed_twice_is_identical(runs):
    first = runs.trace("dropout-1", MLP, "--dropout")
    second = runs.trace("dropout-1-again", MLP, "--dropout")
    done = diff(first, second)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("identical: ")
    assert done.stderr == ""


def test_a_trace_holds_every_node_and_the_environment(runs):
    trace = trace_format.read(runs.trace("dropout-1", MLP, "--dropout"))
    assert trace.complete
    assert trace.environment["theano"]["version"] == "1.0.5"
    assert trace.environment["settings"]["linker"] is not None
    train = [function for function in trace.functions if function.name == "train"]
    assert len(train) == 1 and train[0].where == line_of(MLP, "train = theano.function")
    calls = [call for call in trace.calls if call.key == train[0].key]
    assert [call.number for call in calls] == [1, 2, 3]
    assert all(len(call.nodes) == len(train[0].nodes) for call in calls)
    dtypes = {fp.split("[")[0] for call in calls for _, outputs in call.nodes for fp in outputs}
    assert "float64" in dtypes


def test_tracing_changes_nothing_the_program_computes(runs):
    traced = runs.trace("dropout-1", MLP, "--dropout")
    assert traced.exists()
    done = run_cli("run", "--seed", 1, "--", sys.executable, MLP, "--dropout",
                   env=runs.env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == runs.stdout("dropout-1")


def test_two_seeds_diverge_at_the_first_random_op(runs):
    code, report = diff_json(runs.trace("dropout-1", MLP, "--dropout"),
                             runs.trace("dropout-2", MLP, "--dropout", seed=2))
    assert code == 1
    assert report["status"] == "diverged" and report["exit_code"] == 1
    (origin,) = report["origins"]
    assert origin["kind"] == "inputs"  # the streams' states differ from the start
    assert origin["op_class"].startswith("theano.sandbox.rng_mrg.")
    assert origin["line"] == line_of(MLP, "MRG_RandomStreams().binomial")
    assert origin["call"] == 1


def test_a_one_ulp_op_is_the_origin_with_the_line_that_applied_it(runs):
    first = runs.trace("spoil-a", MLP, "--spoil", options=["--keep-values", "16"])
    second = runs.trace("spoil-b", MLP, "--spoil", options=["--keep-values", "16"])
    done = diff(first, second)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("the runs diverge in call 1 of train #0")
    assert "OneUlpNoise: its inputs were identical, its output 0 differs" in lines[1]
    assert f"created at: {line_of(MLP, 'SPOIL-LINE')}" in done.stdout
    assert "not in theano-det's catalogue" in done.stdout

    code, report = diff_json("--all", first, second)
    assert code == 1
    (origin,) = report["origins"]  # everything else differs because of it
    assert origin["op"] == "OneUlpNoise" and origin["kind"] == "node"
    assert origin["function_name"] == "train" and origin["call"] == 1
    assert origin["rule"] is None
    (difference,) = origin["differences"]  # kept values: one ulp of numbers near 1
    assert 0 < difference["max_abs"] < 1e-12 and difference["elements_differing"] > 0


def test_a_divergence_inside_scan_is_located_in_its_inner_graph(runs):
    # linker=py: scan's Python loop, as on an unpatched Theano 1.0.5 on Python 3.11, whose
    # C loop (scan_perform) does not compile; it calls the inner function the same way.
    first = runs.trace("scan-a", SCAN, "--spoil", flags="linker=py")
    second = runs.trace("scan-b", SCAN, "--spoil", flags="linker=py")
    code, report = diff_json(first, second)
    assert code == 1
    (origin,) = report["origins"]
    assert origin["op"] == "OneUlpNoise"
    assert origin["function_name"] == "scan_fn"
    assert origin["line"] == line_of(SCAN, "SPOIL-LINE")
    assert origin["within"]["function_name"] == "rnn" and "scan" in origin["within"]["op"]
    assert "inside: node" in diff(first, second).stdout


def test_a_killed_run_is_read_up_to_the_kill(runs, tmp_path):
    complete = runs.trace("dropout-all", MLP, "--dropout", "--steps", "6", options=["--calls", "all"])
    killed = tmp_path / "killed.trace"
    child = subprocess.Popen(
        [sys.executable, "-m", "theano_det", "trace", "--out", str(killed), "--seed", "1", "--calls", "all", "--",
         sys.executable, str(MLP), "--dropout", "--steps", "1000", "--sleep", "0.2"],
        env=runs.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            if killed.exists() and killed.read_bytes().count(b'"t":"call"') >= 5:
                break
            time.sleep(0.2)
        assert child.poll() is None, "the traced program ended before it was killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    trace = trace_format.read(killed)
    assert not trace.complete and len(trace.calls) >= 5
    done = diff(complete, killed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "has no end record: the run was stopped" in done.stderr
    assert done.stdout.startswith(f"identical: {len(trace.calls)} traced calls")


def test_traces_made_with_different_flags_are_not_compared(runs):
    other = runs.trace("dropout-fast-compile", MLP, "--dropout", flags="optimizer=fast_compile")
    done = diff(runs.trace("dropout-1", MLP, "--dropout"), other)
    assert done.returncode == 3
    assert "not of the same program" in done.stdout
    assert "optimizer is 'o4' in A and 'fast_compile' in B" in done.stdout


def test_a_truncated_a_corrupted_and_a_foreign_file_are_refused(runs, tmp_path):
    good = runs.trace("dropout-1", MLP, "--dropout")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.trace"
    truncated.write_bytes(data[:-10])
    lines = data.split(b"\n")
    corrupted = tmp_path / "corrupted.trace"
    corrupted.write_bytes(b"\n".join(lines[:3] + [b'{"t":"call","key":'] + lines[4:]))
    for path, message in ((truncated, "is truncated: its last record"),
                          (corrupted, "is damaged at line 4"),
                          (MLP, "is not a theano-det trace")):
        done = diff(good, path)
        assert done.returncode == 3, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""


def test_a_missing_trace_is_a_usage_error(tmp_path):
    done = diff(tmp_path / "nothing.trace", tmp_path / "nothing.trace")
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_trace_will_not_write_over_a_file_that_is_not_a_trace(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine\n")
    done = run_cli("trace", "--out", precious, "--", sys.executable, "-c", "pass")
    assert done.returncode == 3
    assert "is not a theano-det trace: it is left as it is" in done.stderr
    assert precious.read_text() == "mine\n"


def test_a_bad_calls_spec_is_a_usage_error(tmp_path):
    done = run_cli("trace", "--out", tmp_path / "t", "--calls", "3-1", "--", sys.executable, "-c", "pass")
    assert done.returncode == 2
    assert "--calls" in done.stderr


@pytest.mark.parametrize("spec, written", [("1-3", "1-3"), (" 2, 10- ", "2,10-"), ("all", "all"), ("7", "7")])
def test_calls_specs_are_checked_and_normalized(spec, written):
    assert trace_run.parse_calls(spec) == written


@pytest.mark.parametrize("spec", ["0", "5-2", "x", "1-2-3", ""])
def test_bad_calls_specs_are_refused(spec):
    with pytest.raises(ValueError):
        trace_run.parse_calls(spec)


FEW_CALLS = """
import theano, theano.tensor as T
x = T.vector()
f = theano.function([x], (x * 2).sum(), name="double")
kinds = []
for _ in range(5):
    f([1.0, 2.0])
    kinds.append(type(f.fn).__name__)
print(" ".join(kinds))
"""


def test_only_the_selected_calls_are_traced_and_the_linker_gets_its_loop_back(tmp_path):
    out = tmp_path / "few.trace"
    done = run_cli("trace", "--out", out, "--calls", "2", "--", sys.executable, "-c", FEW_CALLS)
    assert done.returncode == 0, done.stderr
    kinds = done.stdout.split()
    assert kinds[:2] == ["TracedFunction", "TracedFunction"]
    assert kinds[2:] == [kinds[2]] * 3 and kinds[2] != "TracedFunction"  # the linker's own loop
    trace = trace_format.read(out)
    assert [(call.number, len(call.nodes)) for call in trace.calls] == [(2, len(trace.functions[0].nodes))]


def test_array_differences_are_measured_on_kept_values():
    import base64
    import struct

    def kept(*numbers):
        return {"dtype": "float32", "shape": [len(numbers)],
                "data": base64.b64encode(struct.pack(f"={len(numbers)}f", *numbers)).decode()}

    found = trace_diff.array_difference(kept(1.0, 2.0, float("nan")), kept(1.0, 2.5, float("nan")))
    assert found == {"elements_differing": 1, "elements": 3, "max_abs": 0.5, "max_rel": 0.2}
    assert "note" in trace_diff.array_difference(kept(1.0), kept(1.0, 2.0))


KERAS_PROGRAM = Path(__file__).resolve().parent / "clients" / "keras2_embedding.py"


@pytest.fixture(scope="module")
def keras_site() -> Path:
    """Keras 2.3.1, installed once into the test cache (the client matrix's copy)."""
    from conftest import pip_target
    from client_libraries import KERAS_2_REQUIREMENTS

    return pip_target("keras-2.3.1", KERAS_2_REQUIREMENTS)


@pytest.mark.slow
def test_a_keras_model_traced_with_runs_shims_is_identical_run_to_run(keras_site, patched_theano, tmp_path):
    env = on_patched_theano(dict(os.environ, KERAS_BACKEND="theano"), patched_theano, keras_site)
    traces = []
    for name in ("a", "b"):
        out = tmp_path / f"keras-{name}.trace"
        done = run_cli("trace", "--out", out, "--seed", 7, "--", sys.executable, KERAS_PROGRAM, env=env)
        assert done.returncode == 0, done.stderr  # Keras 2.3.1 imports on Python 3.10+: run's aliases
        assert done.stdout.split()[0] == "2.3.1"  # the Keras version the program prints
        traces.append(out)
    trace = trace_format.read(traces[0])
    fit = line_of(KERAS_PROGRAM, "model.fit(")
    trained = [function for function in trace.functions if function.where == fit]
    assert trained, [function.where for function in trace.functions]
    assert any(call.key == trained[0].key for call in trace.calls)
    places = [node["line"].rsplit(":", 1)[0] for node in trained[0].nodes if node.get("line")]
    # the user's script (where the model was built, compiled, fitted), rarely Keras' own code
    assert places.count(str(KERAS_PROGRAM)) > len(places) / 2, places
    done = diff(*traces)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_tracer_and_auditor_import_only_the_standard_library_at_start_up():
    from theano_det.seeding.in_process import STARTUP_DIR

    program = (
        "import sys\n"
        f"sys.path.insert(0, {str(STARTUP_DIR)!r})\n"
        "before = set(sys.modules)\n"
        "import _theano_det_trace, _theano_det_audit, _theano_det_compile_hook\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(name for name in new if name not in sys.stdlib_module_names and not name.startswith('_')))\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def write_trace(path: Path, second_output: str, complete=True) -> Path:
    """A two-node trace as the tracer writes it: a cuDNN weight gradient feeding a sum."""
    records = [
        {"t": "header", "format": "theano-det-trace", "version": 1},
        {"t": "environment", "python": "3.11.7", "theano": {"version": "1.0.5"}, "settings": {"linker": "cvm"}},
        {"t": "function", "key": "0-abc", "index": 0, "name": "train", "where": "train.py:40", "traced": True,
         "inputs": ["x", "w"], "nodes": [
             {"op": "GpuDnnConvGradW{algo='none', inplace=True}", "class": "theano.gpuarray.dnn.GpuDnnConvGradW",
              "line": "train.py:12", "from": ["i0", "i1"], "rule": "cudnn-conv-bwd-filter-algo", "algo": "none"},
             {"op": "Sum", "class": "theano.tensor.elemwise.Sum", "line": "train.py:13", "from": ["n0.0"]}]},
        {"t": "call", "key": "0-abc", "call": 1, "within": None,
         "nodes": [[["x#1", "w#1"], [second_output]], [[second_output], ["s#" + second_output]]]},
    ] + ([{"t": "end", "functions": 1, "calls": 1}] if complete else [])
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_diff_names_a_catalogued_cudnn_op_with_its_algorithm_and_fix(tmp_path):
    a = write_trace(tmp_path / "a.trace", "g#1")
    b = write_trace(tmp_path / "b.trace", "g#2", complete=False)
    report = trace_diff.compare(trace_format.read(a), trace_format.read(b))
    assert report.status == trace_diff.DIVERGED
    (origin,) = report.origins
    assert (origin.function.key, origin.call, origin.position) == ("0-abc", 1, 0)
    text = "\n".join(trace_diff.report_lines(report))
    assert "node 0 GpuDnnConvGradW{algo='none', inplace=True} (cuDNN algorithm none)" in text
    assert "created at: train.py:12" in text
    assert "known non-deterministic op (cudnn-conv-bwd-filter-algo)" in text
    assert "fix: " in text and "algo_bwd_filter" in text
    assert any("has no end record" in note for note in report.notes)
    done = diff("--json", a, b)
    assert done.returncode == 1
    assert json.loads(done.stdout)["origins"][0]["rule"]["id"] == "cudnn-conv-bwd-filter-algo"
    assert diff(a, a).returncode == 0
