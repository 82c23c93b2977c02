"""Benchmark for issue 8: Theano's AdvancedIncSubtensor1 variants and theano-det's deterministic op.

An embedding gradient: x is ROWS x COLS float32, y is K x COLS, the K indices
are drawn from [0, DISTINCT), so most rows receive many contributions.
For each K the script prints four tables: time per call, whether 10 calls
give the same bits, the largest difference from a float64 reference, and
whether the result has the bits of np.add.at in float32 (the order the
deterministic ops use, see theano_det/ops/ordered_scatter.py).

On a GPU (Theano's gpuarray backend, device=cuda*) the columns are
GpuAdvancedIncSubtensor1_dev20 (atomicAdd), the stock deterministic
GpuAdvancedIncSubtensor1, and theano-det's GpuDetAdvancedIncSubtensor1
(theano_det/ops/scatter_kernel.py), measured whether or not its gate is open.
On the CPU (--device cpu, or auto without a GPU) the columns are Theano's
AdvancedIncSubtensor1 (its C code) and DetAdvancedIncSubtensor1 (numpy), and
every heading says CPU.

Each call returns a new array (no inplace), so times include copying x.

A fifth table gives the host side of theano-det's GPU op: kernel launches per
call as its launch plan has them (scatter_kernel.launch_plan; the radix sort
alone, for comparison); on a GPU, whether Theano ran the op's C code (its
launches from C, scatter_launch.py) or its perform, and its Python launch code
alone (gpu_incsubtensor.scatter on pygpu arrays, without Theano's per-call
overhead): launches counted per call, and time per call with the plan's sort
and with the radix sort forced. The op itself is also timed with the radix
sort forced (from C, a subclass with rank_max 0), so the GPU run shows the gain
of the one-launch sort and whether its threshold RANK_MAX is well placed.
Python launches cost microseconds each, which matters at small K: the op's
time in the tables is its C code's.

--compile-only needs neither Theano nor a GPU: it compiles the kernel with NVRTC
for sm_60, sm_70, sm_80 and sm_90 as libgpuarray would and prints ptxas's register
and spill counts (tools/scatter_kernel_compile.py; downloads NVIDIA's wheels once).
--dry-run checks that everything the measurement needs imports, and exits.

usage:  python benchmarks/incsubtensor.py [--device auto|gpu|cpu] [--sizes 1000,10000,100000]
            [--rows 10000] [--cols 256] [--distinct 1000] [--runs 10] [--min-seconds 0.5]
            [--json FILE] [--compile-only | --dry-run]
Exit status: 0 measured, 1 a kernel did not compile (--compile-only), 2 bad arguments,
4 cannot run (no Theano; --device gpu without a GPU; --compile-only without its tools).
"""
import argparse
import hashlib
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np

# measure this checkout's theano_det, wherever the script is run from
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Candidate = namedtuple("Candidate", "label compile missing")
Candidate.__doc__ = """One column: compile(x, y, idx) -> (call, to_host, sync); or missing: why not."""

Result = namedtuple("Result", "seconds stable distinct max_error sequential launches_per_call scatter_seconds "
                               "radix_scatter_seconds host radix_seconds")
# for theano-det's GPU op only: its Python launch code alone (gpu_incsubtensor.scatter on pygpu
# arrays, without Theano's per-call overhead): launches counted per call, seconds per call with
# the plan's sort and with the radix sort forced (where RANK_MAX should be); host: "C" when
# Theano ran the op's C code, "Python" when its perform; radix_seconds: the op's time per call
# with the radix sort forced in its C code
Result.__new__.__defaults__ = (None, None, None, None, None)

OURS_GPU = "theano-det `GpuDetAdvancedIncSubtensor1`"


def main(argv=None):
    args = parse_args(argv)
    if args.compile_only:
        return compile_only()
    try:
        import theano
    except ImportError:
        print("incsubtensor benchmark: Theano is not importable here", file=sys.stderr)
        return 4
    if args.dry_run:
        return dry_run(theano, args)
    on_gpu = gpu_available(theano)
    if args.device == "gpu" and not on_gpu:
        print("incsubtensor benchmark: --device gpu, but Theano has no GPU context "
              "(device=%s)" % theano.config.device, file=sys.stderr)
        return 4
    use_gpu = on_gpu and args.device != "cpu"
    candidates = gpu_candidates() if use_gpu else cpu_candidates()
    print_header(theano, use_gpu, args)
    results = {}
    for k in args.sizes:
        x, y, idx = make_problem(k, args.rows, args.cols, args.distinct, seed=k)
        references = float64_reference(x, y, idx), sequential_reference(x, y, idx)
        for candidate in candidates:
            if candidate.missing is None:
                call, to_host, sync = candidate.compile(x, y, idx)
                result = measure(call, to_host, sync, references, args.runs, args.min_seconds)
                if candidate.label == OURS_GPU:
                    counted = launch_counter()
                    scatter_seconds = time_scatter(x, y, idx, args.min_seconds)
                    result = result._replace(
                        launches_per_call=counted(), scatter_seconds=scatter_seconds,
                        radix_scatter_seconds=time_scatter(x, y, idx, args.min_seconds, rank_max=0),
                        host=op_host(call, candidate_op(candidate)),
                        radix_seconds=time_radix_sorted_op(x, y, idx, args.min_seconds))
                results[k, candidate.label] = result
    print_tables(args, candidates, results)
    print_launches(args, results)
    if args.json:
        write_json(args, candidates, results, use_gpu)
    return 0


def planned_launches(k, rows, cols):
    """(launches per call of the op's plan, of the radix sort alone) for K positions into rows x cols."""
    from theano_det.ops import scatter_kernel

    return len(scatter_kernel.launch_plan(k, rows, cols)), len(scatter_kernel.launch_plan(k, rows, cols, rank_max=0))


def time_scatter(x, y, idx, min_seconds, rank_max=None):
    """Seconds per call of gpu_incsubtensor.scatter alone (non-inplace; its read-back syncs),
    with scatter_kernel.RANK_MAX = rank_max for the time (None: the plan's)."""
    from pygpu import gpuarray
    from theano.gpuarray.type import get_context

    from theano_det.ops import scatter_kernel
    from theano_det.ops.gpu_incsubtensor import scatter

    context = get_context(None)
    x_gpu, y_gpu, idx_gpu = (gpuarray.array(array, context=context) for array in (x, y, idx))
    planned = scatter_kernel.RANK_MAX
    scatter_kernel.RANK_MAX = planned if rank_max is None else rank_max
    try:  # the warm-up call compiles the kernels and makes the work buffers
        return seconds_per_call(lambda: scatter(x_gpu, y_gpu, idx_gpu, False, False, context), min_seconds)
    finally:
        scatter_kernel.RANK_MAX = planned


def radix_sorted_op():
    """GpuDetAdvancedIncSubtensor1 whose C code takes the radix sort for every K."""
    from theano_det.ops.gpu_incsubtensor import GpuDetAdvancedIncSubtensor1

    return type("GpuDetAdvancedIncSubtensor1RadixSort", (GpuDetAdvancedIncSubtensor1,), {"rank_max": 0})


def time_radix_sorted_op(x, y, idx, min_seconds):
    """Seconds per call of the op from C with the radix sort forced (as the tables time the op)."""
    call, _, sync = gpu_compiler(radix_sorted_op(), index_on_gpu=True)(x, y, idx)
    return seconds_per_call(call, min_seconds, sync)


def launch_counter():
    """A function that returns the launches per call of the GPU op since this call."""
    from theano_det.ops import gpu_incsubtensor

    before = dict(gpu_incsubtensor.LAUNCHES)

    def per_call():
        calls = gpu_incsubtensor.LAUNCHES["calls"] - before["calls"]
        return (gpu_incsubtensor.LAUNCHES["kernels"] - before["kernels"]) / calls if calls else None
    return per_call


def compile_only():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import scatter_kernel_compile

    return scatter_kernel_compile.main([])


def dry_run(theano, args):
    """Import what the measurement needs (not a GPU), say what would be measured."""
    import theano.gpuarray.subtensor  # noqa: F401  (the _dev20 and stock classes)

    from theano_det.ops import gpu_incsubtensor, scatter_kernel  # noqa: F401

    radix_sorted = radix_sorted_op()()  # the forced radix sort's op: its own compiled module
    if radix_sorted.c_code_cache_version() == gpu_incsubtensor.GpuDetAdvancedIncSubtensor1().c_code_cache_version():
        raise RuntimeError("the op with the radix sort forced would share the op's compiled module")
    print("incsubtensor benchmark (dry run): would measure K in %s on %s x %s, device=%s"
          % (args.sizes, args.rows, args.cols, theano.config.device))
    return 0


def write_json(args, candidates, results, use_gpu):
    """The figures as one JSON document (gpu_check reads it)."""
    import json

    document = {"device": "gpu" if use_gpu else "cpu", "rows": args.rows, "cols": args.cols,
                "distinct": args.distinct, "runs": args.runs, "columns": [],
                "planned_launches": dict((str(k), planned_launches(k, args.rows, args.cols)[0])
                                         for k in args.sizes)}
    for candidate in candidates:
        column = {"label": candidate.label, "missing": candidate.missing, "sizes": {}}
        for k in args.sizes:
            if (k, candidate.label) in results:
                column["sizes"][str(k)] = results[k, candidate.label]._asdict()
        document["columns"].append(column)
    Path(args.json).write_text(json.dumps(document, indent=1))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto")
    parser.add_argument("--sizes", type=sizes, default=[1000, 10000, 100000],
                        help="comma-separated index lengths K")
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--cols", type=int, default=256)
    parser.add_argument("--distinct", type=int, default=1000, help="indices are drawn from [0, DISTINCT)")
    parser.add_argument("--runs", type=int, default=10, help="calls compared bit for bit")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="time at least this long per measurement")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--compile-only", action="store_true",
                       help="compile the GPU kernel (NVRTC, ptxas) without Theano or a GPU; print registers")
    modes.add_argument("--dry-run", action="store_true", help="check the imports and arguments, measure nothing")
    args = parser.parse_args(argv)
    if not 0 < args.distinct <= args.rows:
        parser.error("--distinct must be in [1, --rows]")
    return args


def sizes(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers, got %r" % text)
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError("sizes must be >= 0")
    return values


def gpu_available(theano):
    import theano.gpuarray

    return bool(theano.gpuarray.pygpu_activated) and theano.config.device.startswith(("cuda", "opencl"))


def make_problem(k, rows, cols, distinct, seed):
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    y = rng.standard_normal((k, cols)).astype(np.float32)
    idx = rng.randint(0, distinct, size=k).astype(np.int64)
    return x, y, idx


def float64_reference(x, y, idx):
    reference = x.astype(np.float64)
    np.add.at(reference, idx, y.astype(np.float64))
    return reference


def sequential_reference(x, y, idx):
    """np.add.at in float32: contributions added one at a time in index order."""
    reference = x.copy()
    np.add.at(reference, idx, y)
    return reference


def measure(call, to_host, sync, references, runs, min_seconds):
    """Seconds per call (doubling the batch until it lasts min_seconds), bitwise stability, error,
    and whether the first run has the bits of the sequential reference."""
    reference, sequential = references
    seconds = seconds_per_call(call, min_seconds, sync)
    outputs = [to_host(call()) for _ in range(runs)]
    digests = set(hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest() for out in outputs)
    max_error = float(np.max(np.abs(outputs[0].astype(np.float64) - reference))) if reference.size else 0.0
    same_bits = outputs[0].tobytes() == sequential.tobytes()
    return Result(seconds, len(digests) == 1, len(digests), max_error, same_bits)


def seconds_per_call(call, min_seconds, sync=lambda out: None):
    """Seconds per call after one warm-up call, doubling the batch until it lasts min_seconds
    (sync(out) waits for the last call's work)."""
    sync(call())
    repeat = 1
    while True:
        start = time.perf_counter()
        for _ in range(repeat):
            out = call()
        sync(out)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or repeat >= 1 << 16:
            return elapsed / repeat
        repeat *= 2


# -- the columns -----------------------------------------------------------

def gpu_candidates():
    from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20

    from theano_det.ops.gpu_incsubtensor import GpuDetAdvancedIncSubtensor1

    return [
        Candidate("`_dev20` (atomicAdd)", gpu_compiler(GpuAdvancedIncSubtensor1_dev20, index_on_gpu=True), None),
        Candidate("stock deterministic `GpuAdvancedIncSubtensor1`",
                  gpu_compiler(GpuAdvancedIncSubtensor1, index_on_gpu=False), None),
        Candidate(OURS_GPU, gpu_compiler(GpuDetAdvancedIncSubtensor1, index_on_gpu=True), None),
    ]


def gpu_compiler(op_class, index_on_gpu):
    def compile_(x, y, idx):
        import theano
        from theano.gpuarray.type import gpuarray_shared_constructor

        x_gpu = gpuarray_shared_constructor(x, target=None)
        y_gpu = gpuarray_shared_constructor(y, target=None)
        if index_on_gpu:  # as Theano's optimizer builds each op: _dev20 reads the index on the GPU
            idx_var = gpuarray_shared_constructor(idx, target=None)
        else:
            idx_var = theano.shared(idx, target="cpu")
        out = op_class()(x_gpu, y_gpu, idx_var)
        # the graph is built with the op itself: make sure the optimizer kept it
        function = theano.function([], theano.Out(out, borrow=True))
        check_compiled(function, op_class)
        return function, np.asarray, lambda array: array.sync()
    return compile_


def cpu_candidates():
    import theano.tensor as T
    from theano.tensor.subtensor import AdvancedIncSubtensor1

    from theano_det.ops.det_incsubtensor import DetAdvancedIncSubtensor1

    def compiler(op_class):
        def compile_(x, y, idx):
            import theano
            from theano.compile import get_default_mode

            inputs = [T.matrix(dtype=x.dtype), T.matrix(dtype=y.dtype), T.vector(dtype=idx.dtype)]
            mode = get_default_mode().excluding("gpuarray")  # stay on the CPU
            function = theano.function(inputs, op_class()(*inputs), mode=mode)
            check_compiled(function, op_class)
            return (lambda: function(x, y, idx)), np.asarray, lambda array: None
        return compile_

    return [
        Candidate("CPU: Theano `AdvancedIncSubtensor1` (C code)", compiler(AdvancedIncSubtensor1), None),
        Candidate("CPU: theano-det `DetAdvancedIncSubtensor1` (numpy)", compiler(DetAdvancedIncSubtensor1), None),
    ]


def op_host(function, op_class):
    """"C" when the compiled function runs the op's C code, "Python" when its perform."""
    for node, thunk in zip(function.fn.nodes, function.fn.thunks):
        if isinstance(node.op, op_class):
            return "C" if hasattr(thunk, "cthunk") else "Python"
    raise RuntimeError("the compiled function has no %s node" % op_class.__name__)


def candidate_op(candidate):
    from theano_det.ops.gpu_incsubtensor import GpuDetAdvancedIncSubtensor1

    assert candidate.label == OURS_GPU
    return GpuDetAdvancedIncSubtensor1


def check_compiled(function, op_class):
    ops = [type(node.op) for node in function.maker.fgraph.toposort()]
    if op_class not in ops:
        raise RuntimeError("the compiled function has no %s node: %s" % (op_class.__name__, ops))


# -- output ----------------------------------------------------------------

def print_header(theano, use_gpu, args):
    if use_gpu:
        from theano.gpuarray.type import get_context

        where = "GPU: %s (Theano %s, gpuarray)" % (get_context(None).devname, theano.__version__)
    else:
        where = "CPU only, no GPU measured (Theano %s, device=%s)" % (theano.__version__, theano.config.device)
    print("# AdvancedIncSubtensor1 benchmark: %s" % where)
    print("x: %d x %d float32; y: K x %d float32; indices in [0, %d); "
          "times per call, non-inplace (include copying x)"
          % (args.rows, args.cols, args.cols, args.distinct))


def print_tables(args, candidates, results):
    def cell(k, candidate, show):
        if candidate.missing is not None:
            return candidate.missing
        return show(results[k, candidate.label])

    tables = [
        ("Time per call", lambda r: format_ms(r.seconds)),
        ("Bitwise identical over %d runs" % args.runs,
         lambda r: "yes" if r.stable else "no (%d different)" % r.distinct),
        ("Max |error| vs a float64 reference", lambda r: "%.3g" % r.max_error),
        ("Same bits as np.add.at in float32 (one addition at a time, in index order)",
         lambda r: "yes" if r.sequential else "no"),
    ]
    for title, show in tables:
        print()
        print("## " + title)
        print()
        print("| K (index length) | " + " | ".join(c.label for c in candidates) + " |")
        print("| --- " * (len(candidates) + 1) + "|")
        for k in args.sizes:
            print("| %s | " % format(k, ",").replace(",", " ") +
                  " | ".join(cell(k, c, show) for c in candidates) + " |")
    for candidate in candidates:
        if candidate.missing is not None:
            print()
            print("%s: %s; no number is shown for it." % (candidate.label, candidate.missing))


def print_launches(args, results):
    """Launches per call of theano-det's GPU op: its plan, the radix sort alone, and counted on a GPU."""
    print()
    print("## Host side of theano-det's GPU op: kernel launches per call (one sync each)")
    print()
    print("| K | launch plan | radix sort alone | the op's launches | the op with the radix sort (C) "
          "| counted on the GPU (`scatter()`) | `scatter()` alone per call | `scatter()` with the radix sort |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in args.sizes:
        plan, radix = planned_launches(k, args.rows, args.cols)
        result = results.get((k, OURS_GPU))
        host = "not measured (no GPU)" if result is None or result.host is None else \
            "from C" if result.host == "C" else "from Python (perform: no C code)"
        radix_op = "not measured (no GPU)" if result is None else \
            "not measured" if result.radix_seconds is None else format_ms(result.radix_seconds)
        if result is None or result.launches_per_call is None:
            counted = "not measured (no GPU)" if result is None else "no call launched"
        else:
            counted = "%g" % result.launches_per_call
            if result.launches_per_call != plan:
                counted += " (differs from the plan)"
        times = [format_ms(seconds) if seconds is not None else "not measured"
                 for seconds in (result.scatter_seconds, result.radix_scatter_seconds)] if result is not None \
            else ["not measured (no GPU)"] * 2
        print("| %s | %d | %d | %s | %s | %s | %s | %s |" % (format(k, ",").replace(",", " "), plan, radix, host,
                                                           radix_op, counted, *times))


def format_ms(seconds):
    milliseconds = seconds * 1e3
    return "%.3g ms" % milliseconds


if __name__ == "__main__":
    sys.exit(main())
