"""The audit and `theano-det verify` on a real GPU (run with -m gpu; see shared/gpu/README.md).

Each test runs Theano in a subprocess with the device's THEANO_FLAGS (device=cuda0 and
the library paths, which the autouse fixture keeps) and the flags it adds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import run_cli
from theano_det.target import locate

pytestmark = pytest.mark.gpu

# The settings `theano-det patch` writes for Theano 1.0.x besides the _dev20 rewrite (not
# deterministic=more: the rewrite alone must remove the _dev20 op).
DETERMINISTIC_FLAGS = ("dnn.conv.algo_bwd_filter=deterministic,dnn.conv.algo_bwd_data=deterministic,"
                       "optimizer_excluding=local_gpua_pool_dnn_grad_stride")


def device_env(extra: str = "", pythonpath: str | None = None) -> dict:
    env = dict(os.environ)
    env["THEANO_FLAGS"] = ",".join(part for part in (os.environ["THEANO_FLAGS"], extra) if part)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return env


AUDIT_SCRIPT = textwrap.dedent("""
    import json, sys
    import theano, theano.tensor as T
    import theano_det
    from theano.tensor.signal.pool import pool_2d

    def findings(build):
        try:
            inputs, outputs = build()
            return sorted(f.rule for f in theano_det.audit(theano.function(inputs, outputs)))
        except Exception as error:
            return "error: %s" % str(error).splitlines()[0][:300]

    def embedding():
        table, indices = T.fmatrix(), T.lvector()
        return [table, indices], theano.grad(table[indices].sum(), table)

    def conv():
        x, w = T.ftensor4(), T.ftensor4()
        y = T.nnet.conv2d(x, w)
        return [x, w], theano.grad(y.sum(), [x, w])

    def pool():
        x = T.ftensor4()
        return [x], theano.grad(pool_2d(x, (2, 2), ignore_border=True).sum(), x)

    from theano.gpuarray import dnn
    from theano_det.intarget import verify_probe
    cudnn = dnn.version(raises=False)  # what Theano links with; -1 without cuDNN
    print(json.dumps({"embedding": findings(embedding), "conv": findings(conv), "pool": findings(pool),
                      "cudnn_major": verify_probe.cudnn_major(cudnn) if cudnn > 0 else None}))
""")


def test_the_audit_finds_the_ops_theano_compiles_for_the_gpu():
    done = subprocess.run([sys.executable, "-c", AUDIT_SCRIPT], capture_output=True, text=True,
                          env=device_env(), timeout=1800)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["embedding"] == ["dev20-atomic-inc-subtensor"]
    if found["cudnn_major"] is not None and found["cudnn_major"] >= 8:
        # Theano 1.0.5 cannot compile cuDNN convolutions against cuDNN 8+ (shared/gpu/README.md).
        assert found["conv"].startswith("error:"), found
    else:
        assert found["conv"] == ["cudnn-conv-bwd-data-algo", "cudnn-conv-bwd-filter-algo"]
        assert found["pool"] == ["cudnn-max-pool-grad"]


def verify_on_gpu(env, *args):
    done = run_cli("verify", "--json", "--require-gpu", *args, env=env)
    sys.stderr.write(done.stderr)  # the table, for the record
    return done, json.loads(done.stdout)


def test_verify_catches_the_dev20_op_of_an_unpatched_theano():
    done, document = verify_on_gpu(device_env(), "--check", "embedding_grad")
    assert done.returncode == 1
    (check,) = document["checks"]
    assert "GpuAdvancedIncSubtensor1_dev20" in check["key_ops"]
    assert check["bitwise_stable"] is False
    assert [finding["rule"] for finding in check["findings"]] == ["dev20-atomic-inc-subtensor"]


def test_verify_passes_on_a_patched_theano(tmp_path):
    installed = locate().package_dir
    site = tmp_path / "site"
    shutil.copytree(installed, site / "theano")
    patched = run_cli("patch", "--theano-dir", site / "theano")
    assert patched.returncode == 0, patched.stderr
    done, document = verify_on_gpu(device_env(DETERMINISTIC_FLAGS, pythonpath=str(site)))
    assert os.path.realpath(document["environment"]["theano"]["path"]) == os.path.realpath(site / "theano")
    checks = {check["name"]: check for check in document["checks"]}
    assert not any(name.endswith("_dev20") for name in checks["embedding_grad"]["ops"])
    for check in checks.values():
        if check["runnable"]:
            assert check["bitwise_stable"] and check["matches_reference"], check
    # Where cuDNN computes the 3-D weight gradient no flag helps: that must be the only finding.
    conv3d_on_cudnn = checks["conv3d_grad"]["cudnn"] == "used"
    flagged = [(name, finding["rule"]) for name, check in checks.items() for finding in check["findings"]]
    assert flagged == ([("conv3d_grad", "cudnn-conv3d-bwd-filter")] if conv3d_on_cudnn else [])
    assert done.returncode == (1 if conv3d_on_cudnn else 0), done.stderr
