"""The cost of deterministic cuDNN convolutions, measured on a GPU.

One training step of a small convnet (4 conv layers, batch 64, 3x32x32 float32, SGD)
is timed in three configurations, each in its own process (Theano reads its flags
once, at import):

- cudnn-default: cuDNN with Theano's default algorithms (fwd `small`, bwd `none`);
- cudnn-deterministic: cuDNN with algo_bwd_filter=algo_bwd_data=deterministic;
- corrmm: dnn.enabled=False, i.e. GpuCorrMM (cuBLAS GEMMs).

For each it also trains 10 times from the same start on the same batches and counts
the distinct results (1 = bitwise stable). It prints what it measured side by side
and, with --json, one JSON document; it draws no conclusion.

The cuDNN configurations need the cuDNN 8/9 compatibility patch: by default a copy
of the importable Theano is patched (`theano-det patch --theano-dir COPY`) and used;
the installed Theano is not touched. Run it where the GPU is, e.g.

    bash .gpu/on-device.sh python benchmarks/conv_determinism.py

usage: conv_determinism.py [--steps N] [--runs N] [--use-installed] [--json] [--dry-run]
--dry-run patches the copy (no GPU needed), says what it would measure, and exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from patched_theano import patched_copy  # benchmarks/patched_theano.py

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {
    "cudnn-default": "dnn.enabled=True,dnn.conv.algo_fwd=small,dnn.conv.algo_bwd_filter=none,dnn.conv.algo_bwd_data=none",
    "cudnn-deterministic": "dnn.enabled=True,dnn.conv.algo_fwd=small,"
                           "dnn.conv.algo_bwd_filter=deterministic,dnn.conv.algo_bwd_data=deterministic",
    "corrmm": "dnn.enabled=False",
}
BATCH, CHANNELS, SIZE, CLASSES = 64, 3, 32, 10
# (output channels, stride) of the 4 conv layers, 3x3 filters, "half" padding
LAYERS = [(32, 1), (64, 2), (64, 1), (128, 2)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="timed training steps (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=10, help="repeated trainings for bitwise stability")
    parser.add_argument("--use-installed", action="store_true",
                        help="use the importable Theano as it is (already patched) instead of a patched copy")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--dry-run", action="store_true", help="prepare the patched copy, measure nothing")
    parser.add_argument("--worker", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.steps, args.runs)))
        return 0
    with tempfile.TemporaryDirectory(prefix="conv-determinism-") as scratch:
        pythonpath = None if args.use_installed else patched_copy(Path(scratch), "conv_determinism")
        if args.dry_run:
            print(f"conv_determinism (dry run): would measure {', '.join(CONFIGS)} with {args.steps} steps "
                  f"and {args.runs} runs each, Theano from {pythonpath or 'the installed package'}")
            return 0
        results = {name: run_worker(name, args, pythonpath) for name in CONFIGS}
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_table(results)
    return 0 if all("error" not in result for result in results.values()) else 1


def run_worker(name: str, args, pythonpath) -> dict:
    env = dict(os.environ)
    env["THEANO_FLAGS"] = ",".join(filter(None, [env.get("THEANO_FLAGS"), CONFIGS[name]]))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--runs", str(args.runs)]
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"error": done.stderr.strip()[-3000:] or f"worker exited {done.returncode}"}
    result["wall_s"] = round(time.time() - started, 1)
    return result


def measure(steps: int, runs: int) -> dict:
    """In the worker: build, compile, time, then train `runs` times for bitwise stability."""
    import numpy as np
    import theano
    import theano.tensor as T
    from theano.tensor.nnet import conv2d

    rng = np.random.RandomState(1234)
    floatX = theano.config.floatX
    shapes, channels = [], CHANNELS
    for out_channels, _ in LAYERS:
        shapes.append((out_channels, channels, 3, 3))
        channels = out_channels
    initial = [rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape).astype(floatX) for shape in shapes]
    initial.append(rng.normal(0, 0.05, (channels, CLASSES)).astype(floatX))
    params = [theano.shared(value.copy()) for value in initial]
    batches = [(rng.uniform(-1, 1, (BATCH, CHANNELS, SIZE, SIZE)).astype(floatX),
                rng.randint(0, CLASSES, BATCH).astype("int32")) for _ in range(5)]

    x, y = T.tensor4("x"), T.ivector("y")
    h = x
    for weights, (_, stride) in zip(params[:-1], LAYERS):
        h = T.nnet.relu(conv2d(h, weights, border_mode="half", subsample=(stride, stride)))
    logits = T.dot(h.mean(axis=(2, 3)), params[-1])
    loss = T.nnet.categorical_crossentropy(T.nnet.softmax(logits), y).mean()
    updates = [(p, p - np.asarray(0.01, floatX) * g) for p, g in zip(params, T.grad(loss, params))]
    started = time.time()
    train = theano.function([x, y], loss, updates=updates)
    compile_s = time.time() - started
    conv_ops = sorted({type(node.op).__name__ for node in train.maker.fgraph.toposort()
                       if "Conv" in type(node.op).__name__ or "Corr" in type(node.op).__name__})

    for step in range(5):  # warm-up: algorithm selection, allocations
        train(*batches[step % len(batches)])
    times = []
    for step in range(steps):
        started = time.perf_counter()
        train(*batches[step % len(batches)])  # returns the loss to the host: the step has finished
        times.append(time.perf_counter() - started)

    digests = []
    for _ in range(runs):
        for param, value in zip(params, initial):
            param.set_value(value.copy())
        for batch in batches:
            train(*batch)
        digest = hashlib.sha256()
        for param in params:
            digest.update(np.ascontiguousarray(param.get_value()).tobytes())
        digests.append(digest.hexdigest())
    return {
        "conv_ops": conv_ops,
        "compile_s": round(compile_s, 1),
        "ms_per_step_median": round(1000 * statistics.median(times), 3),
        "ms_per_step_mean": round(1000 * statistics.mean(times), 3),
        "steps": steps,
        "runs": runs,
        "distinct_results": len(set(digests)),
        "device": str(theano.config.device),
        "gpu": gpu_active(),  # false when Theano fell back to the CPU (device flag or not)
        "cudnn_version": cudnn_version(),
    }


def gpu_active() -> bool:
    try:
        import theano.gpuarray
    except ImportError:
        return False
    return bool(theano.gpuarray.pygpu_activated)


def cudnn_version():
    try:
        from theano.gpuarray import dnn
        return dnn.version(raises=False)
    except Exception as error:  # reported, not hidden: the table shows it
        return f"unknown ({error})"


def print_table(results: dict) -> None:
    print(f"{'configuration':<22} {'ms/step (median)':>17} {'ms/step (mean)':>15} {'distinct results':>17}  conv ops")
    for name, result in results.items():
        if "error" in result:
            print(f"{name:<22} FAILED: {result['error'].splitlines()[-1] if result['error'] else ''}")
            continue
        if name.startswith("cudnn") and not any(op.startswith("GpuDnn") for op in result["conv_ops"]):
            print(f"{name:<22} (no cuDNN op in its graph: these figures are not cuDNN's)")
        print(f"{name:<22} {result['ms_per_step_median']:>17.3f} {result['ms_per_step_mean']:>15.3f} "
              f"{str(result['distinct_results']) + ' of ' + str(result['runs']):>17}  {', '.join(result['conv_ops'])}")
    default, det, corrmm = (results[name].get("ms_per_step_median") for name in CONFIGS)
    if default and det:
        print(f"deterministic / default cuDNN: {det / default:.3f}")
    if det and corrmm:
        print(f"deterministic cuDNN / GpuCorrMM: {det / corrmm:.3f}")
    versions = {result.get("cudnn_version") for result in results.values() if "cudnn_version" in result}
    print(f"cuDNN version(s) reported: {', '.join(map(str, versions))}")


if __name__ == "__main__":
    sys.exit(main())
