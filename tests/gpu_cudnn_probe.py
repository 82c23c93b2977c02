"""Runs on the GPU, inside the interpreter under test (THEANO_FLAGS device=cuda...):
exercises Theano's cuDNN convolutions and prints one JSON document.

Used by test_cudnn_gpu.py with the patched Theano first on PYTHONPATH. Every cuDNN
result is compared with GpuCorrMM (cuDNN's optimizers excluded) and with Theano on
the CPU (the GPU optimizers excluded), on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import theano
import theano.tensor as T
from theano.configdefaults import (SUPPORTED_DNN_CONV_ALGO_BWD_DATA, SUPPORTED_DNN_CONV_ALGO_BWD_FILTER,
                                   SUPPORTED_DNN_CONV_ALGO_FWD)
from theano.gpuarray import dnn
from theano.tensor.nnet import conv2d, conv3d

FLOAT = "float32"
CORRMM_MODE = theano.compile.mode.get_default_mode().excluding("conv_dnn")
CPU_MODE = theano.compile.mode.get_default_mode().excluding("gpuarray")
# Algorithms that are plain GEMM-like sums: with full float32 arithmetic (no TF32) they
# agree with the references to float32 rounding; FFT and Winograd transforms are looser.
EXACT = {"fwd": {"none", "small", "large"}, "gw": {"none", "deterministic", "small"},
         "gi": {"none", "deterministic"}}


def main() -> int:
    if not dnn.dnn_present():
        sys.exit(f"cuDNN is not usable here: {dnn.dnn_present.msg}")
    rng = np.random.RandomState(42)
    report = {
        "cudnn_version": dnn.version(),
        "algorithms": algorithms(rng),
        "stability": stability(rng),
        "conv3d": conv3d_forward(rng),
        "graph": graph_ops(),
    }
    print(json.dumps(report))
    return 0


def host(variable):
    """The value on the host (numpy), not a GpuArray."""
    return variable.transfer("cpu")


def references(img, kern, top):
    """Forward, d(sum(out*top))/dkern and /dimg by GpuCorrMM and by the CPU."""
    i, k, t = T.tensor4(), T.tensor4(), T.tensor4()
    out = conv2d(i, k)
    cost = (out * t).sum()
    outputs = [out, T.grad(cost, k), T.grad(cost, i)]
    found = {}
    for name, mode in (("corrmm", CORRMM_MODE), ("cpu", CPU_MODE)):
        function = theano.function([i, k, t], outputs, mode=mode)
        found[name] = [np.asarray(value) for value in function(img, kern, top)]
    return found


def compare(value, refs, exact):
    scale = max(float(np.abs(refs["cpu"]).max()), 1e-30)
    errors = {name: float(np.abs(np.asarray(value) - ref).max()) / scale for name, ref in refs.items()}
    limit = 2e-5 if exact else 2e-3
    return {"relative_error": errors, "limit": limit, "ok": all(error <= limit for error in errors.values())}


def algorithms(rng) -> dict:
    img = rng.uniform(-1, 1, (8, 4, 16, 16)).astype(FLOAT)
    kern = rng.uniform(-1, 1, (6, 4, 3, 3)).astype(FLOAT)
    top = rng.uniform(-1, 1, (8, 6, 14, 14)).astype(FLOAT)
    refs = references(img, kern, top)
    i, k, t = T.tensor4(), T.tensor4(), T.tensor4()
    cases = []
    for algo in SUPPORTED_DNN_CONV_ALGO_FWD:
        cases.append(("fwd", algo, lambda algo=algo: host(dnn.dnn_conv(i, k, algo=algo)), 0))
    for algo in SUPPORTED_DNN_CONV_ALGO_BWD_FILTER:
        cases.append(("gw", algo, lambda algo=algo: host(dnn.dnn_gradweight(i, t, kern.shape, algo=algo)), 1))
    for algo in SUPPORTED_DNN_CONV_ALGO_BWD_DATA:
        cases.append(("gi", algo, lambda algo=algo: host(dnn.dnn_gradinput(k, t, img.shape, algo=algo)), 2))
    results = []
    for direction, algo, build, which in cases:
        entry = {"direction": direction, "algo": algo}
        try:
            function = theano.function([i, k, t], build(), on_unused_input="ignore")
            entry["ops"] = sorted({type(node.op).__name__ for node in function.maker.fgraph.toposort()
                                   if "Dnn" in type(node.op).__name__})
            value = function(img, kern, top)
            entry.update(compare(value, {name: found[which] for name, found in refs.items()},
                                 algo in EXACT[direction]))
        except Exception as error:  # one algorithm failing must not hide the others
            entry.update(ok=False, error=f"{type(error).__name__}: {str(error)[:2000]}")
        results.append(entry)
    return {"results": results, "corrmm_vs_cpu": compare(refs["corrmm"][0], {"cpu": refs["cpu"][0]}, True)}


def stability(rng, runs=10) -> dict:
    """Distinct results of the same gradient computed `runs` times (1 = bitwise stable)."""
    img = rng.uniform(-1, 1, (64, 32, 32, 32)).astype(FLOAT)
    kern = rng.uniform(-1, 1, (64, 32, 3, 3)).astype(FLOAT)
    top = rng.uniform(-1, 1, (64, 64, 30, 30)).astype(FLOAT)
    i, k, t = T.tensor4(), T.tensor4(), T.tensor4()
    found = {}
    for algo in ("deterministic", "none"):
        gw = theano.function([i, t], host(dnn.dnn_gradweight(i, t, kern.shape, algo=algo)))
        gi = theano.function([k, t], host(dnn.dnn_gradinput(k, t, img.shape, algo=algo)))
        found[algo] = {
            "gw": len({hashlib.sha256(np.asarray(gw(img, top)).tobytes()).hexdigest() for _ in range(runs)}),
            "gi": len({hashlib.sha256(np.asarray(gi(kern, top)).tobytes()).hexdigest() for _ in range(runs)}),
        }
    return {"runs": runs, "distinct": found}


def conv3d_forward(rng) -> dict:
    img = rng.uniform(-1, 1, (4, 3, 8, 8, 8)).astype(FLOAT)
    kern = rng.uniform(-1, 1, (5, 3, 3, 3, 3)).astype(FLOAT)
    i, k = T.tensor5(), T.tensor5()
    cpu = theano.function([i, k], conv3d(i, k), mode=CPU_MODE)(img, kern)
    results = []
    for algo in ("none", "small", "fft_tiling", "guess_once", "time_once"):
        entry = {"algo": algo}
        try:
            function = theano.function([i, k], host(dnn.dnn_conv3d(i, k, algo=algo)))
            entry.update(compare(function(img, kern), {"cpu": cpu}, algo in ("none", "small")))
        except Exception as error:
            entry.update(ok=False, error=f"{type(error).__name__}: {str(error)[:2000]}")
        results.append(entry)
    return results


def graph_ops() -> list:
    """The ops Theano's optimizer picks for conv2d and its gradients (cuDNN expected)."""
    i, k = T.tensor4(), T.tensor4()
    cost = conv2d(i, k).sum()
    # the cost too: the gradients of a sum alone do not need the forward convolution
    function = theano.function([i, k], [cost] + T.grad(cost, [i, k]))
    return sorted({type(node.op).__name__ for node in function.maker.fgraph.toposort()
                   if "Conv" in type(node.op).__name__ or "Corr" in type(node.op).__name__})


if __name__ == "__main__":
    sys.exit(main())
