"""Replace Theano's GpuAdvancedIncSubtensor1(_dev20) nodes with a deterministic op.

Two layers, so that what is decided can be tested without a GPU:

- `decide(node, stock_classes)` and `replacement_for(decision, kernel_ready)`
  are pure: which node is replaced, with which parameters, by which op.
  Tests run them on nodes of real Theano graphs (Theano's CPU
  AdvancedIncSubtensor1, and Apply nodes of the real GPU op classes).
- The GPU layer: the stock classes from theano.gpuarray.subtensor, building the
  replacement node, and registering the rewrite in Theano's optdb (`install`).

Until the deterministic GPU kernel exists (docs/det-incsubtensor.md: blocked on
GPU access), the best deterministic GPU op is Theano's own host-looped
GpuAdvancedIncSubtensor1: the rewrite then turns `_dev20` nodes into it (what
`deterministic=more` and the `_dev20` source patch do) and leaves the plain op
alone. When the kernel lands, set `GPU_KERNEL_READY` and teach
`_build_gpu` its op: both stock ops are then replaced by it.

Runs inside the target interpreter (Theano 0.9-1.0.x, Python 3.5+ syntax).
"""
from collections import namedtuple

REWRITE_NAME = "theano_det_advanced_incsubtensor1"
INPLACE_REWRITE_NAME = "theano_det_advanced_incsubtensor1_inplace"
# After the gpuarray lifter (optdb 48.5) has chosen _dev20, before the destroy
# handler (49.5); Theano's inplace pass (60) then makes the replacement inplace.
POSITION = 49.3
TAGS = ("fast_run", "fast_compile", "theano_det")
# where and how Theano registers its own inplace rewrites (local_inplace_incsubtensor1)
INPLACE_POSITION = 60
INPLACE_TAGS = ("fast_run", "inplace", "theano_det")

STOCK_DETERMINISTIC = "GpuAdvancedIncSubtensor1"
NEW_GPU_OP = "GpuDetAdvancedIncSubtensor1"
GPU_KERNEL_READY = False

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


def replacement_for(decision, kernel_ready=GPU_KERNEL_READY):
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

    if target != STOCK_DETERMINISTIC:
        raise NotImplementedError("the deterministic GPU kernel is not written yet")
    x, y, ilist = node.inputs
    op = GpuAdvancedIncSubtensor1(inplace=decision.inplace,
                                  set_instead_of_inc=decision.set_instead_of_inc)
    # the host-looped op reads the index on the host: skip a GPU round trip
    if ilist.owner is not None and isinstance(ilist.owner.op, GpuFromHost):
        ilist = ilist.owner.inputs[0]
    return [op(x, y, ilist)]


_installed = {}


def install():
    """Register the GPU rewrite in Theano's optdb (idempotent); say what it does.

    Meant as the hook for `theano_det.enable()` and the `theano-det run` bootstrap,
    which do not call it until the rewrite has run on a GPU.
    Returns a dict: installed (bool), reason (when not), name, position,
    replaces (class names), replacement (what `_dev20` becomes).
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
    register_local_rewrite(make_local_rewrite(classes, _build_gpu), REWRITE_NAME)
    register_inplace_rewrite()
    _installed.update({
        "installed": True,
        "name": REWRITE_NAME,
        "position": POSITION,
        "replaces": [cls.__name__ for cls in classes],
        "replacement": NEW_GPU_OP if GPU_KERNEL_READY else STOCK_DETERMINISTIC,
        "kernel_ready": GPU_KERNEL_READY,
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
