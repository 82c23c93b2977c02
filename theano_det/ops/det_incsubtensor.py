"""DetAdvancedIncSubtensor1: Theano's AdvancedIncSubtensor1 with a fixed combination order.

Same semantics as Theano 1.0.5's AdvancedIncSubtensor1 / GpuAdvancedIncSubtensor1:
x of any ndim >= 1 (its rows are indexed) and any integer or float dtype;
y broadcast to (len(idx),) + x.shape[1:]; any integer index vector, negative
entries counted from the end; `set_instead_of_inc` (the last duplicate wins,
as in numpy assignment); an inplace variant (destroy_map); an out-of-range
index raises IndexError with numpy's message, and nothing is written.

One deliberate choice where Theano's own ops disagree: y is cast to x's dtype
before it is added (as Theano's CPU C code does with NPY_ARRAY_FORCECAST and
as `_dev20` does in make_node); the host-looped GpuAdvancedIncSubtensor1 and
the float16 Python path add in the wider dtype instead. The cast is a node
in the graph, so the op itself always sees one dtype.

This op runs on the CPU (perform, numpy): the reference for the GPU kernel's
order (ordered_scatter) and the implementation used when there is no GPU.
Runs inside the target interpreter (Theano 0.9-1.0.x, Python 3.5+ syntax).
"""
import theano
import theano.tensor as T
from theano.gof import Apply, Op, local_optimizer
from theano.gradient import DisconnectedType
from theano.tensor.subtensor import _sum_grad_over_bcasted_dims, advanced_subtensor1

from .ordered_scatter import scatter_rows


class FixedOrderIncSubtensor1(Op):
    """What the CPU and GPU fixed-order ops share: their parameters, inplace variant and name."""

    __props__ = ("inplace", "set_instead_of_inc")

    def __init__(self, inplace=False, set_instead_of_inc=False):
        self.inplace = bool(inplace)
        self.set_instead_of_inc = bool(set_instead_of_inc)
        if self.inplace:
            self.destroy_map = {0: [0]}

    def clone_inplace(self):
        return self.__class__(inplace=True, set_instead_of_inc=self.set_instead_of_inc)

    def __str__(self):
        return "%s{%s,%s}" % (self.__class__.__name__,
                              "inplace" if self.inplace else "no_inplace",
                              "set" if self.set_instead_of_inc else "inc")


class DetAdvancedIncSubtensor1(FixedOrderIncSubtensor1):
    """x[ilist] += y (or x[ilist] = y), bitwise reproducible; see the module docstring."""

    def make_node(self, x, y, ilist):
        x = T.as_tensor_variable(x)
        y = T.as_tensor_variable(y)
        ilist = T.as_tensor_variable(ilist)
        # the checks and messages of Theano 1.0.5's AdvancedIncSubtensor1.make_node
        if ilist.type.dtype not in T.integer_dtypes:
            raise TypeError("index must be integers")
        if ilist.type.ndim != 1:
            raise TypeError("index must be vector")
        if x.type.ndim == 0:
            raise TypeError("cannot index into a scalar")
        if y.type.ndim > x.type.ndim:
            raise TypeError("cannot %s x subtensor with ndim=%s by y with ndim=%s" % (
                "set" if self.set_instead_of_inc else "increment", x.type.ndim, y.type.ndim))
        if y.type.dtype != x.type.dtype:
            y = T.cast(y, x.type.dtype)
        return Apply(self, [x, y, ilist], [x.type()])

    def perform(self, node, inputs, output_storage):
        x, y, ilist = inputs
        out = x if self.inplace else x.copy()
        output_storage[0][0] = scatter_rows(out, y, ilist, self.set_instead_of_inc)

    def infer_shape(self, node, input_shapes):
        return [input_shapes[0]]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def R_op(self, inputs, eval_points):
        if None in eval_points[:2]:
            return [None]
        return self.make_node(eval_points[0], eval_points[1], inputs[2]).outputs

    def grad(self, inputs, output_grads):
        # AdvancedIncSubtensor1.grad of Theano 1.0.5, with this op for the `set` case
        (g_output,) = output_grads
        x, y, ilist = inputs
        if x.dtype in T.discrete_dtypes:
            gx = x.zeros_like(dtype=theano.config.floatX)
            gy = y.zeros_like(dtype=theano.config.floatX)
        elif x.dtype in T.complex_dtypes:
            raise NotImplementedError("No support for complex grad yet")
        else:
            if self.set_instead_of_inc:
                gx = det_set_subtensor1(g_output, y.zeros_like(), ilist)
            else:
                gx = g_output
            gy = _sum_grad_over_bcasted_dims(y, advanced_subtensor1(g_output, ilist))
        return [gx, gy, DisconnectedType()()]


def det_inc_subtensor1(x, y, ilist):
    """x with y added at rows ilist (duplicates summed in position order)."""
    return DetAdvancedIncSubtensor1()(x, y, ilist)


def det_set_subtensor1(x, y, ilist):
    """x with rows ilist replaced by y (the last duplicate wins)."""
    return DetAdvancedIncSubtensor1(set_instead_of_inc=True)(x, y, ilist)


@local_optimizer([DetAdvancedIncSubtensor1], inplace=True)
def local_det_incsubtensor1_inplace(node):
    """Write into x when Theano allows it (registered by incsubtensor_rewrite.install)."""
    if isinstance(node.op, DetAdvancedIncSubtensor1) and not node.op.inplace:
        return [node.op.clone_inplace()(*node.inputs)]
    return False
