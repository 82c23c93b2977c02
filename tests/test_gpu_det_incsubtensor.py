"""theano-det's deterministic scatter kernel on a real GPU (run with -m gpu on the device).

tests/gpu_scatter_probe.py does the work: every case of incsubtensor_cases in every
dtype, numpy's bits, stable over runs, inplace, errors; then the op in Theano graphs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parent.parent
DEVICE_FLAGS = os.environ.get("THEANO_FLAGS", "")  # kept from collection time, as in test_incsubtensor_gpu


def test_the_kernel_has_numpys_bits_on_every_case_on_the_gpu(tmp_path):
    env = dict(os.environ, THEANO_FLAGS=",".join(filter(None, [os.environ.get("THEANO_FLAGS"), DEVICE_FLAGS])))
    out = tmp_path / "probe.json"
    result = subprocess.run([sys.executable, "tests/gpu_scatter_probe.py", "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["failed"] == [] and report["passed"], json.dumps(report["failed"][:10], indent=1)
