"""The incsubtensor rewrite and benchmark on a real GPU (Theano 1.0.5 gpuarray backend).

Run on the GPU machine:  bash .gpu/on-device.sh python -m pytest -m gpu tests/test_incsubtensor_gpu.py
Not run without a GPU (the `gpu` marker is deselected by default).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parent.parent
# .gpu/on-device.sh puts device=cuda0 and libgpuarray's paths in THEANO_FLAGS; the
# autouse fixture replaces THEANO_FLAGS later, so keep them from collection time.
DEVICE_FLAGS = os.environ.get("THEANO_FLAGS", "")

PROBE = """
import json, sys
import numpy as np
import theano, theano.tensor as T
import theano_det.ops

install = sys.argv[1] == "install"
installed = theano_det.ops.install() if install else None

def op_names(function):
    return [type(node.op).__name__ for node in function.maker.fgraph.toposort()]

def case(x_value, y_value, idx_value, build, runs=10):
    x, y, idx = (T.TensorType(str(v.dtype), (False,) * v.ndim)() for v in (x_value, y_value, idx_value))
    function = theano.function([x, y, idx], build(x, y, idx))
    outputs = [function(x_value, y_value, idx_value) for _ in range(runs)]
    return function, outputs

rng = np.random.RandomState(0)
report = {"installed": installed, "cases": {}}
x2 = rng.standard_normal((500, 64)).astype("float32")
y2 = rng.standard_normal((20000, 64)).astype("float32")
i2 = rng.randint(-100, 100, size=20000)
x1 = rng.standard_normal(500).astype("float32")
i1 = rng.randint(0, 50, size=20000)
for name, (x_value, y_value, idx_value, build, expected) in {
    "inc_2d": (x2, y2, i2, lambda x, y, i: T.inc_subtensor(x[i], y), "add_at"),
    "set_2d": (x2, y2, i2, lambda x, y, i: T.set_subtensor(x[i], y), "assign"),
    "inc_1d_scalar": (x1, np.float32(0.1), i1, lambda x, y, i: T.inc_subtensor(x[i], y), "add_at"),
}.items():
    function, outputs = case(x_value, y_value, idx_value, build)
    reference = x_value.copy()
    if expected == "assign":
        reference[idx_value] = np.broadcast_to(y_value, (len(idx_value),) + x_value.shape[1:])
    else:
        np.add.at(reference, idx_value, np.broadcast_to(y_value, (len(idx_value),) + x_value.shape[1:]))
    report["cases"][name] = {
        "ops": op_names(function),
        "distinct_results": len(set(np.asarray(out).tobytes() for out in outputs)),
        "same_bits_as_numpy": np.asarray(outputs[0]).tobytes() == reference.tobytes(),
    }

x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()
function = theano.function([x, y, idx], T.inc_subtensor(x[idx], y))
try:
    function(x2, y2[:2], np.array([0, 500]))
    report["out_of_range"] = "no error"
except IndexError as error:
    report["out_of_range"] = "IndexError"

shared = theano.shared(x2.copy())
update = theano.function([y, idx], [], updates=[(shared, T.inc_subtensor(shared[idx], y))])
update(y2, i2)
reference = x2.copy()
np.add.at(reference, i2, y2)
report["inplace"] = {
    "ops": [[type(node.op).__name__, bool(getattr(node.op, "inplace", False))]
            for node in update.maker.fgraph.toposort()],
    "same_bits_as_numpy": shared.get_value().tobytes() == reference.tobytes(),
}
print(json.dumps(report))
"""


def run_probe(mode):
    env = dict(os.environ, THEANO_FLAGS=",".join(filter(None, [os.environ.get("THEANO_FLAGS"), DEVICE_FLAGS])))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBE), mode], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_the_rewrite_theano_uses_the_atomic_op():
    report = run_probe("stock")
    assert "GpuAdvancedIncSubtensor1_dev20" in report["cases"]["inc_2d"]["ops"]
    assert "GpuAdvancedIncSubtensor1_dev20" in report["cases"]["inc_1d_scalar"]["ops"]


def test_with_the_rewrite_every_case_is_deterministic_and_has_numpys_bits():
    report = run_probe("install")
    assert report["installed"]["incsubtensor"]["installed"] is True
    for name, case in report["cases"].items():
        assert "GpuAdvancedIncSubtensor1_dev20" not in case["ops"], name
        assert "GpuAdvancedIncSubtensor1" in case["ops"], name
        assert case["distinct_results"] == 1, name
        assert case["same_bits_as_numpy"], name
    assert report["out_of_range"] == "IndexError"
    assert ["GpuAdvancedIncSubtensor1", True] in report["inplace"]["ops"]
    assert report["inplace"]["same_bits_as_numpy"]


def test_the_benchmark_times_the_three_ops():
    env = dict(os.environ, THEANO_FLAGS=",".join(filter(None, [os.environ.get("THEANO_FLAGS"), DEVICE_FLAGS])))
    result = subprocess.run(
        [sys.executable, "benchmarks/incsubtensor.py", "--device", "gpu", "--sizes", "1000,10000",
         "--runs", "3", "--min-seconds", "0.05"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "# AdvancedIncSubtensor1 benchmark: GPU:" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 10 000 |")]
    assert len(rows) == 5  # time, stability, error, same bits as np.add.at, launches per call
    time_cells = rows[0].split("|")[2:5]
    assert all(cell.strip().endswith(" ms") for cell in time_cells)
    assert [cell.strip() for cell in rows[1].split("|")[3:5]] == ["yes", "yes"]  # stock deterministic, ours
    assert rows[3].split("|")[4].strip() == "yes"  # ours has np.add.at's bits
