"""The cuDNN 8/9 compatibility patch on a real GPU (run on the device: pytest -m gpu).

A copy of the importable Theano is patched with `theano-det patch --theano-dir` and
put first on PYTHONPATH of one probe process (gpu_cudnn_probe.py), which runs every
check; the tests read its report. The installed Theano is not touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import THEANO_COMPILEDIR, first_on_pythonpath, run_cli

pytestmark = pytest.mark.gpu

# conftest replaces THEANO_FLAGS for every test; the device's own flags (device=cuda0,
# include and library paths) are read here, when the module is imported, before that.
DEVICE_FLAGS = os.environ.get("THEANO_FLAGS", "")
PROBE = Path(__file__).with_name("gpu_cudnn_probe.py")


@pytest.fixture(scope="module")
def patched_theano(tmp_path_factory) -> Path:
    spec = importlib.util.find_spec("theano")
    assert spec is not None, "no Theano is importable by this interpreter"
    copy = tmp_path_factory.mktemp("site") / "theano"
    shutil.copytree(list(spec.submodule_search_locations)[0], copy,
                    ignore=shutil.ignore_patterns("__pycache__", ".theano-det"))
    done = run_cli("patch", "--theano-dir", copy)
    assert done.returncode == 0, done.stderr
    return copy


@pytest.fixture(scope="module")
def probe(patched_theano) -> dict:
    env = first_on_pythonpath(dict(os.environ), patched_theano.parent)
    # The device's flags come after the default compile folder, so that one set there wins.
    env["THEANO_FLAGS"] = ",".join(filter(None, [f"base_compiledir={THEANO_COMPILEDIR}", DEVICE_FLAGS,
                                                 "floatX=float32", "dnn.enabled=True"]))
    done = subprocess.run([sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-6000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the record of what the GPU showed, with -s
    return report


def failures(entries):
    return [entry for entry in entries if not entry.get("ok")]


def test_runs_on_cudnn_8_or_later(probe):
    assert probe["cudnn_version"] >= 8000


def test_conv2d_and_its_gradients_use_cudnn(probe):
    assert {"GpuDnnConv", "GpuDnnConvGradW", "GpuDnnConvGradI"} <= set(probe["graph"])


def test_every_algorithm_choice_compiles_runs_and_matches_corrmm_and_the_cpu(probe):
    results = probe["algorithms"]["results"]
    assert {entry["direction"] for entry in results} == {"fwd", "gw", "gi"}
    assert len(results) == 11 + 10 + 10  # every algorithm Theano 1.0.5 offers, per direction
    assert failures(results) == []
    for entry in results:
        expected = {"fwd": "GpuDnnConv", "gw": "GpuDnnConvGradW", "gi": "GpuDnnConvGradI"}[entry["direction"]]
        assert expected in entry["ops"], entry


def test_float32_convolutions_are_computed_in_float32_not_tf32(probe):
    # The GEMM-like algorithms agree with GpuCorrMM and the CPU to float32 rounding
    # (TF32 would be off by about 1e-3 relative): the DEFAULT -> FMA math mapping works.
    exact = [entry for entry in probe["algorithms"]["results"] if entry.get("limit") == 2e-5]
    assert len(exact) == 8 and failures(exact) == []
    assert probe["algorithms"]["corrmm_vs_cpu"]["ok"]


def test_deterministic_gradients_are_bitwise_stable_over_10_runs(probe):
    assert probe["stability"]["distinct"]["deterministic"] == {"gw": 1, "gi": 1}


def test_conv3d_forward_runs_on_cudnn(probe):
    assert failures(probe["conv3d"]) == []
