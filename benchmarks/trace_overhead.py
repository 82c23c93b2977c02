"""Benchmark for issue 13: what `theano-det trace` costs, per traced call and per untraced call.

Each model is trained for N calls of its training function, twice in fresh processes:
under `theano-det run` (the baseline) and under `theano-det trace --calls A-B`.
The program times every call itself. It prints, per model:

- traced calls (A..B): median time under trace / median time of the same calls under run,
  and the trace's bytes per traced call (the call records; the file holds the graphs too);
- untraced calls (after B): median time under trace / under run (the target: < 1.05);
  and, less disturbed by other processes, two identical MLP functions in one traced
  process called in turn, one traced (calls A-B) and one never traced: the median time
  of the first's untraced calls over the second's (the same for two Keras models).

Calls before A are warm-up in both runs. Times are the process's CPU time
(time.process_time), which other processes on a busy machine disturb less than
the wall clock; run/trace pairs alternate and the medians of --repeat pairs are shown. Models: a small MLP (always) and a Keras 2.3.1
model when Keras is importable (--keras-site FOLDER puts a folder with it first on
PYTHONPATH, e.g. the tests' cache ~/.cache/theano-det-tests/keras-2.3.1).

usage:  THEANO_FLAGS=blas.ldflags= python benchmarks/trace_overhead.py [--calls 200] [--traced 11-20] [--repeat 3] [--keras-site DIR]
Exit status: 0 measured, 4 cannot run (a child failed).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# --- the measured programs (run as children: `trace_overhead.py --child MODEL --calls N`) ---------

def mlp_step():
    import numpy
    import theano
    import theano.tensor as T

    rng = numpy.random.RandomState(0)
    floatx = theano.config.floatX
    inputs = rng.normal(size=(64, 100)).astype(floatx)
    targets = rng.normal(size=(64, 10)).astype(floatx)
    w1 = theano.shared(rng.normal(size=(100, 256)).astype(floatx) * 0.1)
    w2 = theano.shared(rng.normal(size=(256, 10)).astype(floatx) * 0.1)
    x, y = T.matrix(), T.matrix()
    loss = T.mean((T.dot(T.tanh(T.dot(x, w1)), w2) - y) ** 2)
    updates = [(w, w - 0.01 * g) for w, g in zip((w1, w2), T.grad(loss, [w1, w2]))]
    train = theano.function([x, y], loss, updates=updates, name="train")
    return lambda: train(inputs, targets)


def keras_step():
    import numpy
    from keras.layers import Dense, Dropout, Embedding, Flatten
    from keras.models import Sequential

    words = numpy.arange(64 * 20).reshape(64, 20) % 500
    labels = (words.sum(axis=1) % 2).astype("float32")
    model = Sequential([Embedding(500, 32, input_length=20), Dropout(0.5), Flatten(),
                        Dense(64, activation="relu"), Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    return lambda: model.train_on_batch(words, labels)


def child(model, calls):
    step = {"mlp": mlp_step, "keras": keras_step}[model]()
    times = []
    for _ in range(calls):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    print(json.dumps(times))
    return 0


def child_side_by_side(model, calls):
    """Two identical models in one process, trained in turn: `traced` (the functions it compiles are
    named so, and `--functions traced` traces their calls A-B) and `plain` (never wrapped: as under `run`)."""
    import theano

    factory = {"mlp": mlp_step, "keras": keras_step}[model]
    steps = {}
    for name in ("traced", "plain"):
        original = theano.function

        def named(*args, **kwargs):
            kwargs["name"] = name
            return original(*args, **kwargs)

        theano.function = named
        try:
            steps[name] = factory()
            steps[name]()  # call 1 (Keras compiles its training function here)
        finally:
            theano.function = original
    times = {"traced": [0.0], "plain": [0.0]}
    for _ in range(calls - 1):
        for name in ("traced", "plain"):
            start = time.process_time()
            steps[name]()
            times[name].append(time.process_time() - start)
    print(json.dumps(times))
    return 0


# --- the driver ----------------------------------------------------------------------------------

def run_child(mode, model, args, env, out=None, functions="*"):
    command = [sys.executable, "-m", "theano_det", mode]
    if mode == "trace":
        command += ["--out", str(out), "--calls", args.traced, "--functions", functions]
    command += ["--seed", "1", "--", sys.executable, str(Path(__file__).resolve()), "--child", model,
                "--calls", str(args.calls)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(ROOT))
    if done.returncode != 0:
        raise RuntimeError("%s %s failed:\n%s" % (mode, model, done.stderr[-2000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def call_record_bytes(path):
    sizes = [len(line) + 1 for line in path.read_bytes().split(b"\n") if line.startswith(b'{"t":"call"')]
    return sum(sizes), len(sizes)


def measure(model, args, env):
    low, high = (int(part) for part in args.traced.split("-"))
    traced_slow, untraced_slow, sizes = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeat):
            base = run_child("run", model, args, env)
            out = Path(folder) / ("%s-%d.trace" % (model, repeat))
            traced = run_child("trace", model, args, env, out)
            traced_slow.append(statistics.median(traced[low - 1:high]) / statistics.median(base[low - 1:high]))
            untraced_slow.append(statistics.median(traced[high:]) / statistics.median(base[high:]))
            total, count = call_record_bytes(out)
            sizes.append((total / max(count, 1), out.stat().st_size, count))
            base_call = statistics.median(base[high:])
    per_call, file_size, count = sizes[-1]
    print("%s: run %.2f ms per call (median of calls %d-%d)" % (model, base_call * 1e3, high + 1, args.calls))
    print("  traced calls %s: %.1fx slower (median of %d runs: %s)" % (
        args.traced, statistics.median(traced_slow), args.repeat, ", ".join("%.1f" % s for s in traced_slow)))
    print("  trace size: %.1f KiB per traced call (%d calls from this process's functions; file %.1f KiB "
          "with the graphs)" % (per_call / 1024, count, file_size / 1024))
    print("  untraced calls: %+.1f%% over run (median of %d runs: %s; target < +5%%)" % (
        (statistics.median(untraced_slow) - 1) * 100, args.repeat,
        ", ".join("%+.1f%%" % ((s - 1) * 100) for s in untraced_slow)))


def measure_side_by_side(model, args, env):
    """The untraced calls of a traced function against a function never traced, in one process."""
    low, high = (int(part) for part in args.traced.split("-"))
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeat):
            times = run_child("trace", model + "-side-by-side", args, env, Path(folder) / "side.trace",
                              functions="traced")
            ratios.append(statistics.median(times["traced"][high:]) / statistics.median(times["plain"][high:]))
    print("%s, side by side in one process: untraced calls of the traced model %+.1f%% over a model never "
          "traced (median of %d runs: %s; target < +5%%)" % (
              model, (statistics.median(ratios) - 1) * 100, args.repeat,
              ", ".join("%+.1f%%" % ((r - 1) * 100) for r in ratios)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("mlp", "keras", "mlp-side-by-side", "keras-side-by-side"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=200, help="training calls per run")
    parser.add_argument("--traced", default="11-20", help="the calls to trace, A-B (after a warm-up)")
    parser.add_argument("--repeat", type=int, default=3, help="run/trace pairs per model")
    parser.add_argument("--keras-site", help="a folder holding Keras 2.3.1, put first on PYTHONPATH")
    args = parser.parse_args(argv)
    if args.child and args.child.endswith("-side-by-side"):
        return child_side_by_side(args.child.split("-")[0], args.calls)
    if args.child:
        return child(args.child, args.calls)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), args.keras_site,
                                                                   os.environ.get("PYTHONPATH")])),
               KERAS_BACKEND="theano")
    models = ["mlp"]
    has_keras = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                                "exit(u.find_spec('keras') is None)"], env=env).returncode == 0
    models += ["keras"] if has_keras else []
    print("trace overhead, Python %s, THEANO_FLAGS=%s" % (sys.version.split()[0], env.get("THEANO_FLAGS", "")))
    if not has_keras:
        print("keras: not importable here (give --keras-site): not measured")
    try:
        for model in models:
            measure_side_by_side(model, args, env)
            measure(model, args, env)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
