"""benchmarks/incsubtensor.py in its CPU mode (its GPU mode is tested in test_incsubtensor_gpu.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(*args):
    return subprocess.run([sys.executable, "benchmarks/incsubtensor.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_cpu_mode_prints_the_four_tables_labelled_cpu():
    result = run_benchmark("--device", "cpu", "--sizes", "300,3000", "--rows", "200", "--cols", "16",
                           "--distinct", "20", "--runs", "4", "--min-seconds", "0.01")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("# AdvancedIncSubtensor1 benchmark: CPU only, no GPU measured")
    headers = [line for line in out.splitlines() if line.startswith("| K (index length) |")]
    assert len(headers) == 4
    assert all(cell.strip().startswith("CPU: ") for cell in headers[0].strip("|").split("|")[1:])
    four_tables, launches = out.split("## Host side of theano-det's GPU op")
    rows = [line.strip("|").split("|") for line in four_tables.splitlines() if line.startswith("| 3 000 |")]
    times, stable, error, sequential = ([cell.strip() for cell in row[1:]] for row in rows)
    assert all(cell.endswith(" ms") and float(cell.split()[0]) > 0 for cell in times)
    assert stable == ["yes", "yes"]
    assert all(0 < float(cell) < 1e-3 for cell in error)  # float32 sums of ~150 terms
    assert sequential == ["yes", "yes"]
    assert "| 3 000 | 2 | 4 |" + " not measured (no GPU) |" * 5 in launches  # 200 rows: one radix pass


def test_launches_per_call_are_printed_as_the_plan_has_them():
    from theano_det.ops import scatter_kernel

    sizes = [1000, 10000, 16384, 16385, 100000]
    result = run_benchmark("--device", "cpu", "--sizes", ",".join(map(str, sizes)), "--rows", "10000",
                           "--cols", "1", "--distinct", "1000", "--runs", "1", "--min-seconds", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("## Host side of theano-det's GPU op: kernel launches per call")[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| 1")]
    assert [row[0] for row in rows] == ["1 000", "10 000", "16 384", "16 385", "100 000"]
    for k, (_, plan, radix, host, radix_op, counted, alone, radix_alone) in zip(sizes, rows):
        assert int(plan) == len(scatter_kernel.launch_plan(k, 10000, 256))
        assert int(radix) == len(scatter_kernel.launch_plan(k, 10000, 256, rank_max=0))
        assert host == radix_op == counted == alone == radix_alone == "not measured (no GPU)"
    # the embedding gradient's sizes: 2 launches up to 16 384 positions, 7 above (8 for every K before)
    assert [int(row[1]) for row in rows] == [2, 2, 2, 7, 7]
    assert [int(row[2]) for row in rows] == [7] * 5


def test_the_benchmark_tells_an_ops_c_code_from_its_perform():
    import theano
    import theano.tensor as T
    from theano.tensor.subtensor import AdvancedIncSubtensor1

    from conftest import load_script
    from theano_det.ops.det_incsubtensor import DetAdvancedIncSubtensor1

    bench = load_script("benchmarks/incsubtensor.py", "incsubtensor_benchmark")
    for op_class, host in ((AdvancedIncSubtensor1, "C"), (DetAdvancedIncSubtensor1, "Python")):
        x, y, idx = T.matrix(), T.matrix(), T.lvector()
        function = theano.function([x, y, idx], op_class()(x, y, idx), mode="FAST_RUN")
        assert bench.op_host(function, op_class) == host
    with pytest.raises(RuntimeError, match="no DetAdvancedIncSubtensor1 node"):
        bench.op_host(theano.function([x], x * 2), DetAdvancedIncSubtensor1)


def test_gpu_mode_without_a_gpu_says_so():
    result = run_benchmark("--device", "gpu", "--sizes", "10")
    assert result.returncode == 4
    assert "--device gpu, but Theano has no GPU context" in result.stderr
    assert result.stdout == ""


def test_bad_arguments_exit_2():
    result = run_benchmark("--sizes", "ten")
    assert result.returncode == 2
    assert "expected comma-separated integers" in result.stderr


def test_json_figures_follow_the_tables(tmp_path):
    figures = tmp_path / "figures.json"
    result = run_benchmark("--device", "cpu", "--sizes", "50", "--rows", "20", "--cols", "4", "--distinct", "5",
                           "--runs", "2", "--min-seconds", "0.001", "--json", str(figures))
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    document = json.loads(figures.read_text())
    assert document["device"] == "cpu" and len(document["columns"]) == 2
    for column in document["columns"]:
        measured = column["sizes"]["50"]
        assert measured["seconds"] > 0 and measured["stable"] is True and measured["sequential"] is True
        assert measured["launches_per_call"] is None and measured["scatter_seconds"] is None  # GPU op only
        assert measured["radix_scatter_seconds"] is None
    assert document["planned_launches"] == {"50": 2}


def test_dry_run_imports_what_the_gpu_measurement_needs_and_measures_nothing():
    result = run_benchmark("--device", "gpu", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("incsubtensor benchmark (dry run): would measure K in [1000, 10000, 100000]")
    assert "| K (index length) |" not in result.stdout


def test_compile_only_prints_registers_and_spills_for_four_architectures():
    import os

    from conftest import CACHE

    env = dict(os.environ, THEANO_DET_TOOLS_CACHE=str(CACHE))  # the test cache's downloads
    result = subprocess.run([sys.executable, "benchmarks/incsubtensor.py", "--compile-only"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for arch in ("60", "70", "80", "90"):
        (line,) = [line for line in lines if line.startswith(f"sm_{arch} float32")]
        assert "td_apply" in line and " regs/0+0 spill" in line
    assert lines[-1] == "all variants compile and assemble"
