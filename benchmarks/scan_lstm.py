"""What the scan and BLAS compat patches buy on the CPU: a 1-layer LSTM and GEMM.

A copy of the importable Theano is patched (`theano-det patch --theano-dir COPY`; the
installed Theano is not touched) and every configuration runs in its own process
(Theano reads its flags once, at import):

LSTM (theano.scan over STEPS time steps), milliseconds per time step of the forward
pass and of forward + backward (loss and gradients of the 4 weight matrices):
- c-loop: scan's C loop (the scan-py311 patch), default C linker;
- python-loop: scan's Python loop (Scan.execute, what Theano falls back to when the
  C loop does not compile) driving the same compiled inner function;
- linker-py: THEANO_FLAGS=linker=py, the usual workaround.
All three link numpy's OpenBLAS (the numpy-wheel-blas patch), so only the loop differs.

GEMM (float32 and float64), milliseconds per call and GFLOP/s:
- blas-off: THEANO_FLAGS=blas.ldflags= (the workaround that numpy's wheels needed
  before the patch: Theano's NumPy C-API stand-ins for BLAS);
- blas-linked: no flag; the patched detection links numpy's OpenBLAS.

Each configuration also checks that its results have the same bits as c-loop's /
blas-linked's (LSTM: c-loop vs python-loop must be identical). It prints what it
measured; it draws no conclusion.

usage: scan_lstm.py [--steps N] [--repeats N] [--use-installed] [--compiledir DIR] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from patched_theano import patched_copy  # benchmarks/patched_theano.py

ROOT = Path(__file__).resolve().parent.parent
LSTM_CONFIGS = {"c-loop": "", "python-loop": "", "linker-py": "linker=py"}
GEMM_CONFIGS = {"blas-off": "blas.ldflags=", "blas-linked": ""}
BATCH, N_IN, N_HID = 16, 64, 128
GEMM_SIZES = [(256, 256, 256), (1024, 1024, 1024), (2048, 1, 2048)]  # (m, k, n); n=1 is GEMV


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="LSTM time steps (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (best is kept)")
    parser.add_argument("--use-installed", action="store_true",
                        help="use the importable Theano as it is (already patched) instead of a patched copy")
    parser.add_argument("--compiledir", default=str(Path.home() / ".cache" / "theano-det-benchmarks"),
                        help="Theano's base_compiledir for these runs (default: %(default)s), kept apart "
                             "from yours: a scan module built from the patched copy would be used there "
                             "by an unpatched Theano")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        measure = measure_lstm if args.worker in LSTM_CONFIGS else measure_gemm
        print(json.dumps(measure(args.worker, args.steps, args.repeats)))
        return 0
    with tempfile.TemporaryDirectory(prefix="scan-lstm-") as scratch:
        pythonpath = None if args.use_installed else patched_copy(Path(scratch), "scan_lstm")
        results = {name: run_worker(name, flags, args, pythonpath)
                   for name, flags in {**LSTM_CONFIGS, **GEMM_CONFIGS}.items()}
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_tables(results, args.steps)
    return 0 if all("error" not in result for result in results.values()) else 1


def run_worker(name: str, flags: str, args, pythonpath) -> dict:
    env = dict(os.environ)
    # Our flags come last and win; a blas.ldflags of the caller's would hide what we measure.
    inherited = [flag for flag in env.get("THEANO_FLAGS", "").split(",") if flag and not flag.startswith("blas.")]
    env["THEANO_FLAGS"] = ",".join(inherited + [f"base_compiledir={args.compiledir}"] + ([flags] if flags else []))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--repeats", str(args.repeats)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": done.stderr.strip()[-3000:] or f"worker exited {done.returncode}"}


def best_time(function, repeats: int, *inputs) -> float:
    function(*inputs)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(*inputs)
        times.append(time.perf_counter() - started)
    return min(times)


def digest(values) -> str:
    import numpy as np

    return hashlib.sha256(b"".join(np.ascontiguousarray(value).tobytes() for value in values)).hexdigest()[:16]


def measure_lstm(name: str, steps: int, repeats: int) -> dict:
    import numpy as np

    if name == "python-loop":  # as when scan_perform.c does not compile: make_thunk's import fails
        sys.modules["theano.scan_module.scan_perform_ext"] = None
    import theano
    import theano.tensor as T
    from theano.scan_module.scan_op import Scan

    floatX = theano.config.floatX
    rng = np.random.RandomState(1234)
    W = theano.shared((rng.randn(N_IN, 4 * N_HID) * 0.1).astype(floatX))
    U = theano.shared((rng.randn(N_HID, 4 * N_HID) * 0.1).astype(floatX))
    b = theano.shared(np.zeros(4 * N_HID, dtype=floatX))
    x = T.tensor3("x")

    def step(x_t, h, c):
        gates = T.dot(x_t, W) + T.dot(h, U) + b
        i, f, o = [T.nnet.sigmoid(gates[:, k * N_HID:(k + 1) * N_HID]) for k in range(3)]
        c = f * c + i * T.tanh(gates[:, 3 * N_HID:])
        return o * T.tanh(c), c

    zeros = T.zeros((x.shape[1], N_HID), dtype=floatX)
    (h, _), _ = theano.scan(step, sequences=x, outputs_info=[zeros, zeros])
    loss = (h[-1] ** 2).mean()
    forward = theano.function([x], loss)
    backward = theano.function([x], [loss] + T.grad(loss, [W, U, b]))
    loops = {type(node.op).__name__: getattr(thunk.perform, "__name__", "")
             for node, thunk in zip(backward.fn.nodes, backward.fn.thunks) if isinstance(node.op, Scan)} \
        if hasattr(backward.fn, "thunks") else {}
    data = rng.uniform(-1, 1, (steps, BATCH, N_IN)).astype(floatX)
    return {
        "forward_ms_per_step": 1000 * best_time(forward, repeats, data) / steps,
        "backward_ms_per_step": 1000 * best_time(backward, repeats, data) / steps,
        "scan_loop": "python" if "execute" in loops.values() else ("c" if loops else "n/a (linker=py)"),
        "result_sha256": digest(backward(data)),
        "blas_ldflags": theano.config.blas.ldflags,
    }


def measure_gemm(name: str, steps: int, repeats: int) -> dict:
    import numpy as np
    import theano
    import theano.tensor as T

    results = {"blas_ldflags": theano.config.blas.ldflags}
    for dtype in ("float32", "float64"):
        a, b = T.matrix(dtype=dtype), T.matrix(dtype=dtype)
        product = theano.function([a, b], T.dot(a, b))
        ops = sorted({type(node.op).__name__ for node in product.maker.fgraph.toposort()})
        for m, k, n in GEMM_SIZES:
            rng = np.random.RandomState(0)
            x, y = rng.rand(m, k).astype(dtype), rng.rand(k, n).astype(dtype)
            seconds = best_time(product, repeats, x, y)
            results[f"{dtype} {m}x{k}x{n}"] = {"ms": 1000 * seconds, "gflops": 2 * m * k * n / seconds / 1e9,
                                             "ops": ops, "result_sha256": digest([product(x, y)])}
    return results


def print_tables(results: dict, steps: int) -> None:
    print(f"LSTM, batch {BATCH}, {N_IN} inputs, {N_HID} hidden, {steps} steps (ms per time step; best of runs)")
    print(f"{'config':<14}{'forward':>10}{'fwd+bwd':>10}  {'loop':<18}result sha256")
    for name in LSTM_CONFIGS:
        result = results[name]
        if "error" in result:
            print(f"{name:<14}error: {result['error'].splitlines()[-1]}")
            continue
        print(f"{name:<14}{result['forward_ms_per_step']:>10.3f}{result['backward_ms_per_step']:>10.3f}  "
              f"{result['scan_loop']:<18}{result['result_sha256']}")
    print()
    print("GEMM (ms per call, GFLOP/s; best of runs)")
    keys = [key for key in results["blas-linked"] if key != "blas_ldflags"] if "error" not in results["blas-linked"] \
        else []
    print(f"{'size':<26}" + "".join(f"{name:>26}" for name in GEMM_CONFIGS))
    for key in keys:
        cells = []
        for name in GEMM_CONFIGS:
            cell = results[name].get(key)
            cells.append(f"{cell['ms']:>10.3f} ms {cell['gflops']:>8.2f} GF/s" if cell else "error")
        print(f"{key:<26}" + "".join(f"{cell:>26}" for cell in cells))
    for name in GEMM_CONFIGS:
        result = results[name]
        print(f"{name}: " + (result["error"].splitlines()[-1] if "error" in result
                             else f"blas.ldflags = {result['blas_ldflags'] or '(empty)'}"))


if __name__ == "__main__":
    sys.exit(main())
