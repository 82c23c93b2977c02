"""Replace Theano's GpuAdvancedIncSubtensor1(_dev20) nodes with a deterministic op.

Two layers, so that what is decided can be tested without a GPU:

- `decide(node, stock_classes)` and `replacement_for(decision, kernel_ready)`
  are pure: which node is replaced, with which parameters, by which op.
  Tests run them on nodes of real Theano graphs (Theano's CPU
  AdvancedIncSubtensor1, and Apply nodes of the real GPU op classes).
- The GPU layer: the stock classes from theano.gpuarray.subtensor, building the
  replacement node, and registering the rewrite in Theano's optdb (`install`).

Which op replaces them depends on a gate. theano-det's own kernel
(GpuDetAdvancedIncSubtensor1, gpu_incsubtensor.py) is used only once it has
passed on a real GPU: a record of that run (written by tools/gpu_check.py,
committed as theano_det/ops/gpu_kernel_passed.json) must vouch for the exact
kernel sources of this version (scatter_kernel.source_digest()). Until then
the best deterministic GPU op is Theano's own host-looped
GpuAdvancedIncSubtensor1: the rewrite turns `_dev20` nodes into it (what
`deterministic=more` and the `_dev20` source patch do) and leaves the plain op
alone. Once the gate opens, both stock ops are replaced by the kernel (for x
of 1 or 2 dimensions; other ranks keep the stock choice).

Runs inside the target interpreter (Theano 0.9-1.0.x, Python 3.5+ syntax).
"""
import json
import os
from collections import namedtuple

from . import scatter_kernel

REWRITE_NAME = "theano_det_advanced_incsubtensor1"
INPLACE_REWRITE_NAME = "theano_det_advanced_incsubtensor1_inplace"
GPU_INPLACE_REWRITE_NAME = "theano_det_gpu_advanced_incsubtensor1_inplace"
# After the gpuarray lifter (optdb 48.5) has chosen _dev20, before the destroy
# handler (49.5); Theano's inplace pass (60) then makes the replacement inplace.
POSITION = 49.3
TAGS = ("fast_run", "fast_compile", "theano_det")
# where and how Theano registers its own inplace rewrites (local_inplace_incsubtensor1)
INPLACE_POSITION = 60
INPLACE_TAGS = ("fast_run", "inplace", "theano_det")

STOCK_DETERMINISTIC = "GpuAdvancedIncSubtensor1"
NEW_GPU_OP = "GpuDetAdvancedIncSubtensor1"
# The record of a GPU run that passed (see gpu_kernel_ready); absent until one has.
PASSED_RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_kernel_passed.json")

# dtypes the planned kernel handles (libgpuarray's ga_* types); others are left alone
KERNEL_DTYPES = frozenset(["float16", "float32", "float64", "int8", "int16", "int32",
                           "int64", "uint8", "uint16", "uint32", "uint64"])

Decision = namedtuple("Decision", "stock_op set_instead_of_inc inplace uses_atomics")
Decision.__doc__ = """What a matched node is: its op's class name and parameters.

uses_atomics: the op is the atomicAdd one (`_dev20`), non-deterministic.
"""


def decide(node, stock_classes, dtypes=KERNEL_DTYPES):
    """The Decision for `node`, or None when the rewrite must leave it alone.

    Matches the exact stock classes only (`_dev20` subclasses the plain op, and
    a future deterministic op may too), and only dtypes the kernel handles.
    """
    op = node.op
    if type(op) not in stock_classes:
        return None
    x, y, ilist = node.inputs
    if x.type.ndim < 1 or ilist.type.ndim != 1 or y.type.ndim > x.type.ndim:
        return None
    if x.type.dtype not in dtypes:
        return None
    name = type(op).__name__
    return Decision(name, bool(op.set_instead_of_inc), bool(op.inplace), name.endswith("_dev20"))


def gpu_kernel_ready(record_path=PASSED_RECORD):
    """Whether a recorded GPU run vouches for this version's kernel sources.

    The record (JSON) must say "passed": true and carry the kernel_sha256 of
    scatter_kernel.source_digest() (the kernel sources, launch plans and the op's
    launch code): any change to them closes the gate until they pass on a GPU again.
    """
    try:
        with open(record_path) as stream:
            record = json.load(stream)
        return (isinstance(record, dict) and record.get("passed") is True
                and record.get("kernel_sha256") == scatter_kernel.source_digest())
    except (OSError, ValueError):  # no record, or no launch code to vouch for
        return False


def replacement_for(decision, kernel_ready=False):
    """The name of the op that replaces the decided node, or None to keep it."""
    if kernel_ready:
        return NEW_GPU_OP
    if decision.uses_atomics:
        return STOCK_DETERMINISTIC
    return None


def make_local_rewrite(stock_classes, build, choose=replacement_for):
    """A Theano local optimizer: decide, choose the replacement, build its outputs.

    `build(node, decision, target)` returns the replacement outputs.
    """
    from theano.gof import local_optimizer

    @local_optimizer(list(stock_classes))
    def local_det_advanced_incsubtensor1(node):
        decision = decide(node, stock_classes)
        target = None if decision is None else choose(decision)
        if target is None:
            return False
        return build(node, decision, target)

    return local_det_advanced_incsubtensor1


def register_local_rewrite(local_rewrite, name, position=POSITION, tags=TAGS):
    """Register `local_rewrite` in Theano's optdb once; False if `name` was already there."""
    from theano.compile import optdb
    from theano.gof import TopoOptimizer

    if name in optdb.__db__:
        return False
    pass_ = TopoOptimizer(local_rewrite, failure_callback=TopoOptimizer.warn_inplace)
    optdb.register(name, pass_, position, *tags)
    return True


def register_inplace_rewrite():
    """Let Theano turn DetAdvancedIncSubtensor1 nodes inplace, as it does its own op."""
    from .det_incsubtensor import local_det_incsubtensor1_inplace

    return register_local_rewrite(local_det_incsubtensor1_inplace, INPLACE_REWRITE_NAME,
                                  INPLACE_POSITION, INPLACE_TAGS)


def register_gpu_inplace_rewrite():
    """The same for GpuDetAdvancedIncSubtensor1 (Theano's own rewrite knows only its classes)."""
    from .gpu_incsubtensor import local_gpu_det_incsubtensor1_inplace_function

    return register_local_rewrite(local_gpu_det_incsubtensor1_inplace_function(),
                                  GPU_INPLACE_REWRITE_NAME, INPLACE_POSITION, INPLACE_TAGS)


# -- the GPU layer ---------------------------------------------------------

def gpu_stock_classes():
    """(GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20), or None without gpuarray."""
    try:
        from theano.gpuarray.subtensor import (GpuAdvancedIncSubtensor1,
                                               GpuAdvancedIncSubtensor1_dev20)
    except ImportError:
        return None
    return (GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20)


def _build_gpu(node, decision, target):
    from theano.gpuarray.basic_ops import GpuFromHost
    from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1

    x, y, ilist = node.inputs
    if target == NEW_GPU_OP:
        if x.type.ndim <= 2:
            from .gpu_incsubtensor import GpuDetAdvancedIncSubtensor1

            op = GpuDetAdvancedIncSubtensor1(inplace=decision.inplace,
                                             set_instead_of_inc=decision.set_instead_of_inc)
            return [op(x, y, ilist)]
        if not decision.uses_atomics:
            return False  # higher ranks: the stock deterministic op stays
        target = STOCK_DETERMINISTIC
    if target != STOCK_DETERMINISTIC:
        raise ValueError("no GPU op named %s" % target)
    op = GpuAdvancedIncSubtensor1(inplace=decision.inplace,
                                  set_instead_of_inc=decision.set_instead_of_inc)
    # the host-looped op reads the index on the host: skip a GPU round trip
    if ilist.owner is not None and isinstance(ilist.owner.op, GpuFromHost):
        ilist = ilist.owner.inputs[0]
    return [op(x, y, ilist)]


_installed = {}


def install(record_path=PASSED_RECORD):
    """Register the GPU rewrite in Theano's optdb (idempotent); say what it does.

    Meant as the hook for `theano_det.enable()` and the `theano-det run` bootstrap,
    which do not call it until the rewrite has run on a GPU. The replacement is
    theano-det's kernel only when gpu_kernel_ready(record_path) (the gate).
    Returns a dict: installed (bool), reason (when not), name, position,
    replaces (class names), replacement (what `_dev20` becomes), kernel_ready.
    """
    if _installed:
        return dict(_installed)
    try:
        import theano.gof  # noqa: F401  (Theano-PyMC has no theano.gof)
    except ImportError:
        return {"installed": False,
                "reason": "this Theano has no theano.gof (Theano-PyMC is not supported yet)"}
    classes = gpu_stock_classes()
    if classes is None:
        return {"installed": False, "reason": "this Theano has no theano.gpuarray.subtensor"}
    ready = gpu_kernel_ready(record_path)
    choose = lambda decision: replacement_for(decision, kernel_ready=ready)  # noqa: E731
    register_local_rewrite(make_local_rewrite(classes, _build_gpu, choose), REWRITE_NAME)
    register_inplace_rewrite()
    if ready:
        register_gpu_inplace_rewrite()
    _installed.update({
        "installed": True,
        "name": REWRITE_NAME,
        "position": POSITION,
        "replaces": [cls.__name__ for cls in classes],
        "replacement": NEW_GPU_OP if ready else STOCK_DETERMINISTIC,
        "kernel_ready": ready,
    })
    return dict(_installed)


# -- the same rewrite for Theano's CPU op ----------------------------------

def cpu_local_rewrite():
    """The rewrite for Theano's CPU AdvancedIncSubtensor1 -> DetAdvancedIncSubtensor1.

    Not installed by `install()` (the CPU op is already deterministic): it runs
    the matcher end to end on CPU graphs in tests, and the CPU op through
    theano.function in the benchmark.
    """
    from theano.tensor.subtensor import AdvancedIncSubtensor1

    from .det_incsubtensor import DetAdvancedIncSubtensor1

    def build(node, decision, target):
        op = DetAdvancedIncSubtensor1(inplace=decision.inplace,
                                      set_instead_of_inc=decision.set_instead_of_inc)
        return [op(*node.inputs)]

    return make_local_rewrite((AdvancedIncSubtensor1,), build,
                              choose=lambda decision: "DetAdvancedIncSubtensor1")
