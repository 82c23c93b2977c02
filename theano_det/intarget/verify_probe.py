"""theano-det verify, the part that runs inside the target interpreter.

    python verify_probe.py --out FILE [--repeat N] [--require-gpu] [--check NAME]...

Builds small graphs that exercise Theano's known sources of non-determinism,
compiles them with the environment's current settings (THEANO_FLAGS, .theanorc),
audits the compiled graphs with graph_audit.py (beside this file), runs each one
N times, compares the outputs bit for bit and with a float64 reference computed
on the CPU, and writes one JSON document to FILE. Exit status 0 means the
document was written; what it says decides theano-det's exit code.

Self-test, for theano-det's own tests: THEANO_DET_SELFTEST=nondeterministic adds
a check whose op moves every output element by one ulp in a random direction on
each call (so the runs differ), THEANO_DET_SELFTEST=wrong one whose op returns a
wrong value (so the reference comparison fails). Both values may be given,
separated by commas.

Python 3.5+, standard library, numpy and Theano only: theano-det is not imported.
"""

import argparse
import collections
import ctypes
import ctypes.util
import hashlib
import json
import os
import platform
import re
import sys
import time
import traceback

try:
    from . import graph_audit
except (ImportError, SystemError, ValueError):  # run as a file: graph_audit.py is beside it
    import graph_audit

FORMAT = 1
DEFAULT_REPEAT = 5
SEED = 20240601
SELFTEST_VARIABLE = "THEANO_DET_SELFTEST"

# Outputs match the reference when max|out - ref| <= RTOL[dtype] * max(1, max|ref|).
RTOL = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-10}
TOLERANCE = ("max |output - reference| <= rtol * max(1, max |reference|), "
             "rtol 1e-2 (float16), 1e-4 (float32), 1e-10 (float64)")
REFERENCE = "the same graph in float64 on the same inputs, compiled for the CPU (GPU optimizations excluded)"

# Settings that decide which ops Theano compiles (dotted names; Theano-PyMC spells them with "__").
# The document's status (theano_det.verification.verify maps these to exit codes).
DETERMINISTIC, NONDETERMINISTIC, CANNOT_RUN, ERROR = "deterministic", "nondeterministic", "cannot_run", "error"

SETTINGS = ("device", "floatX", "mode", "optimizer", "deterministic", "dnn.enabled",
            "dnn.conv.algo_fwd", "dnn.conv.algo_bwd_filter", "dnn.conv.algo_bwd_data",
            "optimizer_excluding", "optimizer_including")

# cuDNN 8 removed this call, which the cuDNN convolution code of Theano <= 1.0.5 makes.
REMOVED_CUDNN_CALL = re.compile(r"cudnnGetConvolutionForwardAlgorithm\s*\(")

# build(theano, dtype, reference) -> Graph; reference=True asks for the graph the
# reference computes (dtype is then float64), which may differ in how it is fed.
Check = collections.namedtuple("Check", "name description uses_cudnn key_ops build")
# mode: None for the environment's default mode; note: what the check's report should say.
Graph = collections.namedtuple("Graph", "inputs outputs values mode note")
Graph.__new__.__defaults__ = (None, None)


def main(argv=None):
    parser = argparse.ArgumentParser(description="theano-det verify probe (see the module docstring)")
    parser.add_argument("--out", required=True, help="write the JSON document here")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--require-gpu", action="store_true")
    parser.add_argument("--check", action="append", default=[], choices=CHECK_NAMES)
    args = parser.parse_args(argv)
    document = verify(max(2, args.repeat), args.require_gpu, args.check)
    with open(args.out, "w") as handle:
        json.dump(document, handle, indent=2, default=json_default)
    return 0


def verify(repeat, require_gpu=False, only=()):
    document = collections.OrderedDict([
        ("format", FORMAT), ("status", None), ("summary", None), ("gpu", None), ("gpu_note", None),
        ("environment", None), ("repeat", repeat), ("tolerance", TOLERANCE),
        ("reference", REFERENCE), ("checks", [])])
    try:
        import numpy  # noqa: F401
        import theano
    except Exception as error:  # ImportError, or a Theano that breaks on this Python
        return cannot_run(document, "cannot import Theano: %s" % one_line(error), import_hint(error))
    environment = describe_environment(theano)
    document["environment"] = environment
    document["gpu"] = environment["gpu"]
    if environment["gpu"] is None:
        document["gpu_note"] = "No GPU was tested (%s): these results hold for the CPU only." % (
            environment["gpu_problem"])
        if require_gpu:
            return cannot_run(document, "no usable GPU: %s" % environment["gpu_problem"], no_gpu_hint())
    blocked = cudnn_blocked(environment)
    for check in selected_checks(only):
        say("running %s" % check.name)
        document["checks"].extend(run_with_cudnn_fallback(theano, check, repeat, environment, blocked))
    document["status"], document["summary"] = summarize(document["checks"], repeat)
    return document


# theano-det's image sets this; Apptainer sets the other two in every container it runs.
IMAGE_VARIABLE = "THEANO_DET_IMAGE"
APPTAINER_VARIABLES = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")


def no_gpu_hint():
    """In theano-det's image the device is set already: what is missing is the GPU itself."""
    if any(os.environ.get(name) for name in APPTAINER_VARIABLES):
        return ("this container was started without the host's GPU: `apptainer run --nv IMAGE.sif ...` "
                "(or `apptainer exec --nv`) on a node with an NVIDIA GPU")
    if os.environ.get(IMAGE_VARIABLE):
        return ("this container was started without a GPU: `docker run --gpus all ...` on a machine with "
                "an NVIDIA GPU and the NVIDIA container toolkit (Apptainer: `apptainer run --nv`)")
    return ("run on a machine with an NVIDIA GPU and set THEANO_FLAGS=device=cuda0 "
            "(gpuarray backend, needs pygpu) or device=gpu (Theano before 1.0)")


def cannot_run(document, reason, hint=None):
    document["status"] = CANNOT_RUN
    document["summary"] = reason
    document["hint"] = hint
    return document


def import_hint(error):
    if "blas_opt_info" in str(error):
        return ("this numpy does not describe its BLAS (no blas_opt_info), which Theano asks for "
                "when it is imported: set blas.ldflags, e.g. THEANO_FLAGS=blas.ldflags= (empty: "
                "Theano then uses numpy's C API for BLAS)")
    return None


def summarize(checks, repeat):
    """(status, one sentence) for a list of check results."""
    ran = [check for check in checks if check["runnable"] and not check.get("error")]
    unstable = [c["name"] for c in ran if c["bitwise_stable"] is False]
    wrong = [c["name"] for c in ran if c["matches_reference"] is False]
    flagged = [c["name"] for c in checks if c.get("findings")]
    errors = [c["name"] for c in checks if c.get("error")]
    problems = []
    if unstable:
        problems.append("not bitwise stable over %d runs: %s" % (repeat, ", ".join(unstable)))
    if wrong:
        problems.append("not matching the float64 reference: %s" % ", ".join(wrong))
    if flagged:
        problems.append("non-deterministic ops compiled: %s" % ", ".join(flagged))
    if problems:
        return NONDETERMINISTIC, "; ".join(problems)
    if errors:
        return ERROR, "could not run: %s" % ", ".join(errors)
    if not ran:
        return ERROR, "no check could run"
    return DETERMINISTIC, ("every check that ran gave the same bits in all %d runs, matched "
                             "the float64 reference and compiled no op known to be "
                             "non-deterministic" % repeat)


# --- the checks -------------------------------------------------------------------

def normal(rng, *shape):
    return rng.standard_normal(shape)


def conv2d_graph(theano, dtype, reference):
    """conv2d and its gradients with respect to input and weights, random upstream gradient."""
    import numpy
    T = theano.tensor
    rng = numpy.random.RandomState(SEED)
    values = [normal(rng, 8, 4, 32, 32), normal(rng, 8, 4, 5, 5), normal(rng, 8, 8, 28, 28)]
    x, w, g = T.tensor4("x", dtype), T.tensor4("w", dtype), T.tensor4("g", dtype)
    conv2d = getattr(T.nnet, "conv2d", None) or T.nnet.conv.conv2d
    y = conv2d(x, w)
    dx, dw = theano.grad((y * g).sum(), [x, w])
    return Graph([x, w, g], [y, dx, dw], values)


def maxpool2d_graph(theano, dtype, reference):
    """2x2 max pooling and its gradient, random upstream gradient."""
    import numpy
    T = theano.tensor
    rng = numpy.random.RandomState(SEED + 1)
    values = [normal(rng, 8, 8, 32, 32), normal(rng, 8, 8, 16, 16)]
    x, g = T.tensor4("x", dtype), T.tensor4("g", dtype)
    try:
        from theano.tensor.signal.pool import pool_2d  # Theano 0.8+
        y = pool_2d(x, (2, 2), ignore_border=True)
    except ImportError:  # Theano 0.7
        from theano.tensor.signal.downsample import max_pool_2d
        y = max_pool_2d(x, (2, 2), ignore_border=True)
    dx = theano.grad((y * g).sum(), x)
    return Graph([x, g], [y, dx], values)


def embedding_graph(theano, dtype, reference):
    """The gradient of an embedding lookup: 100000 indices into 200 rows, so every row
    receives about 500 additions (where a GPU adds with atomics, they collide)."""
    import numpy
    T = theano.tensor
    rng = numpy.random.RandomState(SEED + 2)
    values = [normal(rng, 1000, 64), rng.randint(0, 200, size=100000).astype("int64"),
              normal(rng, 100000, 64)]
    table, indices, g = T.matrix("table", dtype), T.lvector("indices"), T.matrix("g", dtype)
    dtable = theano.grad((table[indices] * g).sum(), table)
    return Graph([table, indices, g], [dtable], values)


MRG_SIZE = (512, 256)


def mrg_graph(theano, dtype, reference):
    """A draw from MRG_RandomStreams(seed); the reference runs the same generator state
    through the CPU op, in float64."""
    import numpy
    from theano.sandbox.rng_mrg import MRG_RandomStreams, mrg_uniform
    streams = MRG_RandomStreams(seed=SEED)
    draw = streams.uniform(size=MRG_SIZE, dtype=dtype)
    if not reference:
        return Graph([], [draw], [])
    state = numpy.asarray(streams.state_updates[-1][0].get_value())  # does not depend on dtype
    state_input = theano.tensor.imatrix("rstate")
    sample = mrg_uniform.new(state_input, len(MRG_SIZE), dtype, MRG_SIZE)[1]
    return Graph([state_input], [sample], [state])


def conv3d_graph(theano, dtype, reference):
    """conv3d gradients with respect to input and weights; where cuDNN computes the weight
    gradient no flag makes it deterministic (the audit says so)."""
    import numpy
    T = theano.tensor
    conv3d = getattr(T.nnet, "conv3d", None)
    if conv3d is None:
        raise NotRunnable("this Theano has no theano.tensor.nnet.conv3d (Theano 0.9+)",
                          "upgrade Theano to check 3-D convolutions")
    rng = numpy.random.RandomState(SEED + 3)
    values = [normal(rng, 2, 3, 10, 10, 10), normal(rng, 4, 3, 3, 3, 3), normal(rng, 2, 4, 8, 8, 8)]
    tensor5 = T.TensorType(dtype, (False,) * 5)
    x, w, g = tensor5("x"), tensor5("w"), tensor5("g")
    y = conv3d(x, w)
    dx, dw = theano.grad((y * g).sum(), [x, w])
    return Graph([x, w, g], [dx, dw], values)


RNN_STEPS, RNN_BATCH, RNN_INPUTS, RNN_HIDDEN = 12, 16, 24, 48


def rnn_graph(theano, dtype, reference):
    """A tanh RNN written with scan, MRG dropout on the recurrent state inside the loop: its
    states and the gradients with respect to input and weights, random upstream gradient.
    The dropout masks are drawn in float32 whatever the dtype, so the float64 reference
    drops the same units (the draws depend only on the generator's integer state)."""
    import numpy
    from theano.sandbox.rng_mrg import MRG_RandomStreams
    T = theano.tensor
    rng = numpy.random.RandomState(SEED + 5)
    values = [normal(rng, RNN_STEPS, RNN_BATCH, RNN_INPUTS), normal(rng, RNN_INPUTS, RNN_HIDDEN) * 0.2,
              normal(rng, RNN_HIDDEN, RNN_HIDDEN) * 0.2, normal(rng, RNN_STEPS, RNN_BATCH, RNN_HIDDEN)]
    x, g = T.tensor3("x", dtype), T.tensor3("g", dtype)
    w_in, w_rec = T.matrix("w_in", dtype), T.matrix("w_rec", dtype)
    streams = MRG_RandomStreams(seed=SEED)

    def step(x_t, h_previous):
        keep = T.cast(streams.uniform(size=h_previous.shape, dtype="float32") < 0.8, dtype)
        return T.tanh(T.dot(x_t, w_in) + T.dot(h_previous * keep, w_rec))

    # scan's gradient gives the random state's (integer) loop a floatX initial gradient, which
    # it then refuses to mix with the float64 reference's: build with floatX = dtype.
    with floatx(theano, dtype):
        states, _ = theano.scan(step, sequences=x, outputs_info=T.zeros((x.shape[1], RNN_HIDDEN), dtype))
        dx, dw_in, dw_rec = theano.grad((states * g).sum(), [x, w_in, w_rec])
    mode, note = scan_loop_mode(theano, reference)
    return Graph([x, w_in, w_rec, g], [states, dx, dw_in, dw_rec], values, mode, note)


class floatx(object):
    """theano.config.floatX set to `dtype` while a graph is built (Theano 0.8+'s change_flags)."""

    def __init__(self, theano, dtype):
        change_flags = getattr(theano, "change_flags", None) or getattr(theano.configparser, "change_flags", None)
        self.context = change_flags(floatX=dtype) if change_flags is not None else None

    def __enter__(self):
        return self.context.__enter__() if self.context is not None else None

    def __exit__(self, *error):
        return self.context.__exit__(*error) if self.context is not None else False


_scan_loop = {}


def scan_loop_mode(theano, reference):
    """(mode, note): scan's compiled C loop where it builds; else its Python loop (Scan.execute,
    what Theano falls back to when it has no C compiler), which needs the Python linker: with
    the C linker, a C loop that fails to compile (Theano <= 1.0.5's scan_perform.c on Python
    3.11) fails the whole function."""
    if "problem" not in _scan_loop:
        try:
            try:
                from theano.scan_module import scan_perform_ext  # noqa: F401  (compiles on first import)
            except ImportError as error:
                if "scan_module" not in str(error):
                    raise
                from theano.scan import scan_perform_ext  # noqa: F401  (Theano-PyMC)
            _scan_loop["problem"] = None
        except Exception as error:
            _scan_loop["problem"] = one_line(error)
    problem = _scan_loop["problem"]
    if problem is None:
        return None, "scan loop: C (scan_perform)"
    base = theano.compile.mode.get_mode("FAST_RUN" if reference else None)
    mode = theano.compile.mode.Mode(linker="py", optimizer=getattr(base, "provided_optimizer", base.optimizer))
    note = ("scan loop: Python (Scan.execute, outer graph with the Python linker): scan's C loop "
            "cannot be built here: %s" % problem)
    return mode, note


def selftest_graph(kind):
    def build(theano, dtype, reference):
        import numpy
        rng = numpy.random.RandomState(SEED + 4)
        x = theano.tensor.matrix("x", dtype)
        y = theano.tensor.tanh(x)
        if not reference:
            y = selftest_op(theano, kind)(y)
        return Graph([x], [y], [normal(rng, 64, 64)])
    return build


def selftest_op(theano, kind):
    """A real Theano op that spoils its input on purpose (see the module docstring)."""
    import numpy
    Op = getattr(theano, "Op", None) or theano.gof.Op
    Apply = getattr(theano, "Apply", None) or theano.gof.Apply

    class SelfTestSpoil(Op):
        __props__ = ("kind",)

        def __init__(self, kind):
            self.kind = kind

        def make_node(self, x):
            x = theano.tensor.as_tensor_variable(x)
            return Apply(self, [x], [x.type()])

        def perform(self, node, inputs, outputs):
            x = numpy.array(inputs[0], copy=True)
            if self.kind == "nondeterministic":
                up = (numpy.frombuffer(os.urandom(x.size), dtype=numpy.uint8) & 1).reshape(x.shape)
                x = numpy.nextafter(x, numpy.where(up == 1, numpy.inf, -numpy.inf)).astype(x.dtype)
            else:
                x.flat[0] += 1
            outputs[0][0] = x

    return SelfTestSpoil(kind)


CHECKS = (
    Check("conv2d", "conv2d forward and gradients (input, weights)", True, r"Conv|Corr", conv2d_graph),
    Check("maxpool2d", "2-D max pooling forward and gradient", True, r"Pool|Downsample", maxpool2d_graph),
    Check("embedding_grad", "embedding lookup gradient, many duplicate indices", False,
          r"IncSubtensor", embedding_graph),
    Check("mrg_uniform", "a draw from a seeded MRG_RandomStreams", False, r"(?i)mrg", mrg_graph),
    Check("conv3d_grad", "conv3d gradients (input, weights)", True, r"Conv|Corr", conv3d_graph),
    Check("rnn_dropout", "an RNN (scan) forward and gradients with MRG dropout inside the loop", False,
          r"(?i)scan|mrg", rnn_graph),
)
SELFTESTS = {
    "nondeterministic": Check("selftest_nondeterministic", "self-test: an op that adds random noise",
                              False, r"SelfTest", selftest_graph("nondeterministic")),
    "wrong": Check("selftest_wrong", "self-test: an op that returns a wrong value",
                   False, r"SelfTest", selftest_graph("wrong")),
}
CHECK_NAMES = tuple(check.name for check in CHECKS)


def selected_checks(only=()):
    checks = [check for check in CHECKS if not only or check.name in only]
    for kind in filter(None, (part.strip() for part in os.environ.get(SELFTEST_VARIABLE, "").split(","))):
        if kind not in SELFTESTS:
            raise SystemExit("%s=%s: the self-tests are %s" % (SELFTEST_VARIABLE, kind, ", ".join(SELFTESTS)))
        checks.append(SELFTESTS[kind])
    return checks


# --- running a check -------------------------------------------------------------

class NotRunnable(Exception):
    def __init__(self, reason, fix):
        Exception.__init__(self, reason)
        self.reason, self.fix = reason, fix


class CompileFailed(Exception):
    pass


def run_with_cudnn_fallback(theano, check, repeat, environment, blocked):
    """The check's result(s): where cuDNN cannot be used, a 'not runnable' entry for the
    cuDNN variant and the check run without cuDNN."""
    if check.uses_cudnn and blocked:
        return [not_runnable(check.name + " (cuDNN)", check.description, blocked["reason"], blocked["fix"]),
                run_check(theano, check, repeat, exclude_cudnn=True, reraise=False)]
    try:
        return [run_check(theano, check, repeat)]
    except CompileFailed as failure:
        if not (check.uses_cudnn and environment["cudnn"]["used_by_theano"]):
            return [errored(check, "compiling failed: %s" % failure)]
        reason = "compiling with cuDNN failed: %s" % failure
        fix = ("make cuDNN usable by this Theano (see the error), or set dnn.enabled=False "
               "to use Theano's own GPU convolution and pooling")
        return [not_runnable(check.name + " (cuDNN)", check.description, reason, fix),
                run_check(theano, check, repeat, exclude_cudnn=True, reraise=False)]


def run_check(theano, check, repeat, exclude_cudnn=False, reraise=True):
    import numpy
    started = time.time()
    result = new_result(check.name, check.description)
    dtype = str(theano.config.floatX)
    result["dtype"] = dtype
    try:
        graph = check.build(theano, dtype, False)
    except NotRunnable as refusal:
        return not_runnable(check.name, check.description, refusal.reason, refusal.fix)
    mode = graph.mode or theano.compile.mode.get_default_mode()
    if exclude_cudnn:
        mode = mode.excluding("cudnn")
    if graph.note:
        result["note"] = graph.note
    values = [cast(value, dtype) for value in graph.values]
    try:
        function = theano.function(graph.inputs, graph.outputs, mode=mode, no_default_updates=True)
    except Exception as error:
        if reraise:
            raise CompileFailed(one_line(error))
        return errored(check, "compiling failed: %s" % one_line(error), started)
    result["compile_seconds"] = round(time.time() - started, 3)
    nodes = graph_audit.graph_nodes(function)
    result["ops"] = graph_audit.op_names(nodes)
    result["key_ops"] = [name for name in result["ops"] if re.search(check.key_ops, name)]
    result["cudnn"] = ("excluded" if exclude_cudnn else
                       "used" if any(name.startswith("GpuDnn") for name in result["ops"]) else "not used")
    result["cudnn_algorithms"] = graph_audit.cudnn_algorithms(nodes)
    result["findings"] = graph_audit.audit_nodes(nodes)
    try:
        run_started = time.time()
        runs = [[numpy.asarray(out) for out in function(*values)] for _ in range(repeat)]
        result["run_seconds"] = round(time.time() - run_started, 3)
        digests = [outputs_sha256(outputs) for outputs in runs]
        result["sha256"] = digests[0]
        result["inputs_sha256"] = outputs_sha256(values)
        result["distinct_outputs"] = len(set(digests))
        result["bitwise_stable"] = len(set(digests)) == 1
        compare_with_reference(theano, check, dtype, runs[0], result)
    except Exception as error:
        return errored(check, "running failed: %s" % one_line(error), started, result)
    result["seconds"] = round(time.time() - started, 3)
    return result


def compare_with_reference(theano, check, dtype, outputs, result):
    import numpy
    graph = check.build(theano, "float64", True)
    values = [cast(cast(value, dtype), "float64") for value in graph.values]
    mode = (graph.mode or theano.compile.mode.get_mode("FAST_RUN")).excluding("gpuarray", "gpu", "cudnn")
    function = theano.function(graph.inputs, graph.outputs, mode=mode, no_default_updates=True)
    expected = [numpy.asarray(out) for out in function(*values)]
    worst, matches = 0.0, len(expected) == len(outputs)
    for out, ref in zip(outputs, expected):
        if out.shape != ref.shape:
            matches = False
            continue
        diff = float(numpy.max(numpy.abs(out.astype("float64") - ref))) if ref.size else 0.0
        allowed = RTOL.get(str(out.dtype), 0.0) * max(1.0, float(numpy.max(numpy.abs(ref))) if ref.size else 1.0)
        worst = max(worst, diff)
        matches = matches and diff <= allowed
    result["matches_reference"] = bool(matches)
    result["max_abs_diff"] = worst


def cast(value, dtype):
    """Float arrays take the check's dtype; index and state arrays keep theirs."""
    return value.astype(dtype) if value.dtype.kind == "f" else value


def outputs_sha256(arrays):
    import numpy
    digest = hashlib.sha256()
    for array in arrays:
        array = numpy.ascontiguousarray(array)
        digest.update(("%s%r" % (array.dtype.str, array.shape)).encode("ascii"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def new_result(name, description):
    return collections.OrderedDict([
        ("name", name), ("description", description), ("runnable", True), ("dtype", None),
        ("ops", []), ("key_ops", []), ("cudnn", None), ("cudnn_algorithms", []), ("findings", []),
        ("bitwise_stable", None), ("distinct_outputs", None), ("matches_reference", None),
        ("max_abs_diff", None), ("seconds", None), ("compile_seconds", None), ("run_seconds", None),
        ("sha256", None), ("inputs_sha256", None)])


def not_runnable(name, description, reason, fix):
    result = new_result(name, description)
    result.update(runnable=False, reason=reason, fix=fix, seconds=0.0)
    return result


def errored(check, message, started=None, result=None):
    result = result if result is not None else new_result(check.name, check.description)
    result["error"] = message
    result["seconds"] = round(time.time() - started, 3) if started else 0.0
    return result


# --- the environment -------------------------------------------------------------

def describe_environment(theano):
    import numpy
    config = theano.config
    backend, gpu, gpu_problem = detect_gpu(theano)
    return collections.OrderedDict([
        ("python", platform.python_version()),
        ("python_executable", sys.executable),
        ("platform", platform.platform()),
        ("theano", collections.OrderedDict([
            ("version", str(getattr(theano, "__version__", "unknown"))),
            ("path", os.path.dirname(os.path.abspath(theano.__file__))),
            ("backend", backend)])),
        ("numpy", numpy.__version__),
        ("gpu", gpu),
        ("gpu_problem", gpu_problem),
        ("gpu_architecture", gpu_architecture(backend) if gpu else None),
        ("pygpu", module_version("pygpu")),
        ("libgpuarray", libgpuarray_version()),
        ("cuda_driver", cuda_driver_version()),
        ("cuda_runtime", cuda_runtime_version()),
        ("cudnn", describe_cudnn(theano, backend)),
        ("settings", collections.OrderedDict((name, config_value(config, name)) for name in SETTINGS)),
        ("theano_flags", os.environ.get("THEANO_FLAGS")),
        ("theanorc", os.environ.get("THEANORC")),
    ])


def detect_gpu(theano):
    """(backend, GPU name or None, why there is no GPU or None)."""
    device = str(config_value(theano.config, "device"))
    for module_name in ("theano.gpuarray", "theano.sandbox.gpuarray"):
        gpuarray = sys.modules.get(module_name)
        if gpuarray is not None and getattr(gpuarray, "pygpu_activated", False):
            try:
                from importlib import import_module
                types = import_module(module_name + ".type")
                context = types.get_context(None)
                return "gpuarray", str(getattr(context, "devname", context)), None
            except Exception as error:
                return "gpuarray", None, "the gpuarray backend is active but has no default context (%s)" % (
                    one_line(error))
    cuda = sys.modules.get("theano.sandbox.cuda")
    if cuda is not None and getattr(cuda, "cuda_enabled", False):
        number = getattr(getattr(cuda, "use", None), "device_number", None)
        if number is not None:
            try:
                return "cuda", str(cuda.device_properties(number)["name"]), None
            except Exception:
                return "cuda", "gpu%s" % number, None
    if device.startswith(("cuda", "gpu", "opencl")):
        return "cpu", None, "device is %r but Theano did not initialize it (see Theano's messages)" % device
    return "cpu", None, "Theano's device is %r" % device


def gpu_architecture(backend):
    """The default GPU's compute capability, e.g. "sm_90": the bits depend on it (compare)."""
    try:
        if backend == "gpuarray":
            for module_name in ("theano.gpuarray.type", "theano.sandbox.gpuarray.type"):
                types = sys.modules.get(module_name)
                if types is not None:
                    bin_id = types.get_context(None).bin_id
                    return bin_id.decode() if isinstance(bin_id, bytes) else str(bin_id)
        elif backend == "cuda":
            cuda = sys.modules["theano.sandbox.cuda"]
            properties = cuda.device_properties(cuda.use.device_number)
            return "sm_%d%d" % (properties["major"], properties["minor"])
    except Exception:  # an old pygpu or backend without the attribute: compare falls back to the name
        pass
    return None


def describe_cudnn(theano, backend):
    version = cudnn_library_version(config_value(theano.config, "dnn.library_path"))
    info = collections.OrderedDict([
        ("version", None), ("version_number", None), ("used_by_theano", False), ("problem", None)])
    if backend != "cpu" and str(config_value(theano.config, "dnn.enabled")) != "False":
        try:
            if backend == "gpuarray":
                from theano.gpuarray import dnn
                info["used_by_theano"] = bool(dnn.dnn_available(None))
            else:
                from theano.sandbox.cuda import dnn
                info["used_by_theano"] = bool(dnn.dnn_available())
            if info["used_by_theano"] and not version:  # the library is not on the loader's path
                linked = dnn.version()  # gpuarray: an int; the old backend: (header, library)
                version = int(linked[-1] if isinstance(linked, tuple) else linked)
        except Exception as error:
            info["problem"] = one_line(error)
    info["version"], info["version_number"] = format_cudnn_version(version), version
    if info["used_by_theano"] and version and cudnn_major(version) >= 8:
        calls = files_calling_removed_cudnn_api(backend_folder(backend))
        if calls:
            info["problem"] = (
                "Theano %s's cuDNN convolution code (%s) calls cudnnGetConvolutionForwardAlgorithm, "
                "which cuDNN 8 removed: every cuDNN convolution fails to compile against cuDNN %s"
                % (getattr(theano, "__version__", "?"), ", ".join(calls), format_cudnn_version(version)))
    return info


def cudnn_blocked(environment):
    """{'reason', 'fix'} when the checks must run without cuDNN, else None."""
    problem = environment["cudnn"]["problem"]
    if not (environment["cudnn"]["used_by_theano"] and problem and "cuDNN 8 removed" in problem):
        return None
    return {"reason": problem,
            "fix": "point Theano at cuDNN 7 (dnn.include_path, dnn.library_path), or set "
                   "dnn.enabled=False so that convolutions and pooling run on Theano's own GPU "
                   "code (GpuCorrMM, GpuPool), which is what the checks ran instead"}


def backend_folder(backend):
    names = {"gpuarray": ("theano.gpuarray", "theano.sandbox.gpuarray"), "cuda": ("theano.sandbox.cuda",)}
    for name in names.get(backend, ()):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            return os.path.dirname(os.path.abspath(module.__file__))
    return None


def files_calling_removed_cudnn_api(folder):
    """The C sources in a backend folder that would call the removed cuDNN API when
    compiled against cuDNN 8 or newer."""
    found = []
    for sub in ("", "c_code"):
        where = os.path.join(folder, sub) if folder else None
        if not where or not os.path.isdir(where):
            continue
        for name in sorted(os.listdir(where)):
            if name.endswith((".c", ".h")):
                with open(os.path.join(where, name), "rb") as handle:
                    text = handle.read().decode("utf-8", "replace")
                if live_removed_cudnn_calls(text):
                    found.append(os.path.join(sub, name) if sub else name)
    return found


def live_removed_cudnn_calls(text):
    """How many calls of the removed API a cuDNN 8+ build compiles. Code in a branch that
    cuDNN 8+ skips (`#ifndef CUDNN_VERSION`, the `#else` of `#if CUDNN_MAJOR >= 7`, as
    theano-det's compat patch and Theano's helpers for old cuDNN write it) does not count."""
    frames = []  # per open #if: [taken by cuDNN 8+: True, False or None (unknown), in the #else branch]
    calls = 0
    for line in text.splitlines():
        directive = re.match(r"\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b(.*)", line)
        if directive:
            keyword, condition = directive.group(1), directive.group(2).strip()
            if keyword in ("if", "ifdef", "ifndef"):
                frames.append([taken_by_cudnn8(keyword, condition), False])
            elif keyword in ("else", "elif") and frames:
                frames[-1] = [None if keyword == "elif" else frames[-1][0], True]
            elif keyword == "endif" and frames:
                frames.pop()
            continue
        skipped = any((taken is False and not in_else) or (taken is True and in_else)
                      for taken, in_else in frames)
        if not skipped and REMOVED_CUDNN_CALL.search(line):
            calls += 1
    return calls


def taken_by_cudnn8(keyword, condition):
    """Whether a cuDNN 8 or newer build takes this #if branch (None: cannot tell)."""
    if condition == "CUDNN_VERSION" and keyword in ("ifdef", "ifndef"):
        return keyword == "ifdef"
    match = re.match(r"(?:defined\s*\(?\s*CUDNN_VERSION\s*\)?\s*&&\s*)?"
                     r"CUDNN_(MAJOR|VERSION)\s*(<=|>=|<|>)\s*(\d+)\s*$", condition)
    if keyword != "if" or not match:
        return None
    eight = 8 if match.group(1) == "MAJOR" else 8000
    operator, number = match.group(2), int(match.group(3))
    if operator in ("<", "<="):
        return False if number <= eight else None
    return True if number <= eight else None


def config_value(config, name):
    """A Theano setting as a JSON value, or None when this Theano has no such setting."""
    for spelling in (name, name.replace(".", "__")):
        value = config
        try:
            for part in spelling.split("."):
                value = getattr(value, part)
        except Exception:
            continue
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        return str(value)
    return None


def module_version(name):
    module = sys.modules.get(name)
    return str(getattr(module, "__version__", "unknown")) if module is not None else None


def libgpuarray_version():
    gpuarray = sys.modules.get("pygpu.gpuarray")
    for function in ("api_version", "abi_version"):
        try:
            return "%s %s" % (function, getattr(gpuarray, function)())
        except Exception:
            continue
    return None


def load_library(names, folder=None):
    """The first of these libraries that loads: from `folder`, then as the loader finds it."""
    for name in names:
        candidates = [os.path.join(folder, "lib%s.so" % name)] if folder else []
        candidates += [ctypes.util.find_library(name) or "lib%s.so" % name]
        for path in candidates:
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def cuda_driver_version():
    library = load_library(["cuda"])
    number = ctypes.c_int(0)
    if library is None or library.cuDriverGetVersion(ctypes.byref(number)) != 0:
        return None
    return "%d.%d" % (number.value // 1000, (number.value % 1000) // 10)


def cuda_runtime_version():
    number = ctypes.c_int(0)
    runtime = load_library(["cudart"])
    if runtime is not None and runtime.cudaRuntimeGetVersion(ctypes.byref(number)) == 0:
        return "%d.%d" % (number.value // 1000, (number.value % 1000) // 10)
    nvrtc = load_library(["nvrtc"])  # what libgpuarray compiles kernels with
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    if nvrtc is not None and nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0:
        return "%d.%d (nvrtc)" % (major.value, minor.value)
    return None


def cudnn_library_version(folder=None):
    library = load_library(["cudnn"], folder or None)
    if library is None:
        return None
    library.cudnnGetVersion.restype = ctypes.c_size_t
    return int(library.cudnnGetVersion())


def cudnn_major(number):
    return number // 10000 if number >= 90000 else number // 1000


def format_cudnn_version(number):
    if not number:
        return None
    if number >= 90000:  # cuDNN 9 encodes major * 10000 + minor * 100 + patch
        return "%d.%d.%d" % (number // 10000, (number % 10000) // 100, number % 100)
    return "%d.%d.%d" % (number // 1000, (number % 1000) // 100, number % 100)


# --- small helpers ---------------------------------------------------------------

def one_line(error):
    text = "%s: %s" % (type(error).__name__, error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else text)[:500]


def say(message):
    sys.stderr.write("theano-det verify: %s\n" % message)
    sys.stderr.flush()


def json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
