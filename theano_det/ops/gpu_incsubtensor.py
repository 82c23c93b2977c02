"""GpuDetAdvancedIncSubtensor1: x[idx] += y (or = y) on the GPU, bitwise reproducible and fast.

The semantics of DetAdvancedIncSubtensor1 (det_incsubtensor.py): y cast to x's
dtype; negative indices from the end; the last duplicate wins for `set`; an
index out of range raises numpy's IndexError and nothing is written. The
order of additions is ordered_scatter's: per (row, column), the positions in
increasing order, so the bits are np.add.at's.

The work is done by the kernels of scatter_kernel.py, compiled by libgpuarray
(NVRTC), in the order scatter_kernel.launch_plan gives (2 launches for
K <= RANK_MAX). Two host sides launch them:

- the op's C code (Theano's GpuKernelBase: the kernels compiled once per
  module, the launches and the one read-back in scatter_launch.py's C), which
  Theano uses whenever it compiles C, as it must for its gpuarray backend;
- `perform` / scatter(), through pygpu's GpuKernel, into work buffers kept for
  the next call of the same size: the same kernels from Python, for the GPU
  probe's checks of the kernels and where Theano runs no C.

x has 1 or 2 dimensions (a 1-D x is an N x 1 view); the rewrite leaves other
ranks to Theano's ops.

Imports Theano's gpuarray backend and pygpu: only the GPU layer of
incsubtensor_rewrite imports this module. Python 3.5+ syntax.
"""
from collections import OrderedDict

import numpy as np
import theano.tensor as T
from theano.gof import Apply
from theano.gpuarray.basic_ops import GpuKernelBase, Kernel, as_gpuarray_variable, infer_context_name
from theano.gpuarray.type import gpu_context_type

from . import scatter_kernel as sk
from .det_incsubtensor import FixedOrderIncSubtensor1
from .ordered_scatter import scatter_rows
from .scatter_launch import NO_BAD_POSITION, host_source


class GpuDetAdvancedIncSubtensor1(GpuKernelBase, FixedOrderIncSubtensor1):
    """x[ilist] += y (or x[ilist] = y) on the GPU in the fixed order; see the module docstring."""

    _f16_ok = True
    params_type = gpu_context_type
    # the C code's switch to the radix sort (None: scatter_kernel.RANK_MAX); the benchmark's
    # subclass with 0 times the radix sort from C, to show where RANK_MAX belongs
    rank_max = None

    def make_node(self, x, y, ilist):
        ctx_name = infer_context_name(x, y, ilist)
        x_ = as_gpuarray_variable(x, ctx_name)
        if y.type.dtype != x_.type.dtype:
            y = T.cast(y, x_.type.dtype)  # the kernel sees one dtype, as _dev20's make_node does
        y_ = as_gpuarray_variable(y, ctx_name)
        ilist_ = as_gpuarray_variable(ilist, ctx_name)  # an index made on the GPU stays there
        if ilist_.type.dtype not in T.integer_dtypes:
            raise TypeError("index must be integers")
        if ilist_.type.ndim != 1:
            raise TypeError("index must be vector")
        if x_.type.ndim == 0:
            raise TypeError("cannot index into a scalar")
        if x_.type.ndim > 2:
            raise TypeError("GpuDetAdvancedIncSubtensor1 handles x of 1 or 2 dimensions, not %d"
                            % x_.type.ndim)
        if y_.type.ndim > x_.type.ndim:
            raise TypeError("cannot %s x subtensor with ndim=%s by y with ndim=%s" % (
                "set" if self.set_instead_of_inc else "increment", x_.type.ndim, y_.type.ndim))
        sk.check_dtypes(x_.type.dtype, ilist_.type.dtype)
        return Apply(self, [x_, y_, ilist_], [x_.type()])

    def get_params(self, node):
        return node.outputs[0].type.context

    def perform(self, node, inputs, output_storage, context):
        x, y, ilist = inputs
        output_storage[0][0] = scatter(x, y, ilist, self.set_instead_of_inc, self.inplace, context)

    def infer_shape(self, node, input_shapes):
        return [input_shapes[0]]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    # -- the C code: the same kernels, launched from C (scatter_launch.py) --

    def gpu_kernels(self, node, nodename):
        from pygpu import gpuarray

        types = {"size": gpuarray.SIZE, "ssize": gpuarray.SSIZE, "buffer": gpuarray.GpuArray,
                 "uint32": "uint32", "int32": "int32"}
        dtype, index_dtype = node.inputs[0].dtype, node.inputs[2].dtype
        source = sk.kernel_source(dtype, index_dtype)
        return [Kernel(code=source, name=name, params=[types[t] for t in sk.ARGUMENTS[name]],
                       flags=sk.kernel_flags(dtype, index_dtype))
                for name in sk.KERNEL_NAMES]

    def c_headers(self):
        return super(GpuDetAdvancedIncSubtensor1, self).c_headers() + [
            "<gpuarray_helper.h>", "<gpuarray/buffer.h>", "<sys/types.h>"]

    def c_header_dirs(self):
        from theano.gpuarray.basic_ops import gpuarray_helper_inc_dir

        return super(GpuDetAdvancedIncSubtensor1, self).c_header_dirs() + [gpuarray_helper_inc_dir()]

    def c_code_cache_version(self):
        return c_code_version() + (-1 if self.rank_max is None else self.rank_max,)

    def c_support_code_struct(self, node, nodename):
        index_type = "npy_" + node.inputs[2].dtype
        return super(GpuDetAdvancedIncSubtensor1, self).c_support_code_struct(node, nodename) + C_HOOKS + \
            host_source() + C_SCATTER % {"index_type": index_type, "unsigned": int(index_type.startswith("npy_u")),
                                           "rank_max": "TD_RANK_MAX" if self.rank_max is None else int(self.rank_max)}

    def c_code(self, node, name, inputs, outputs, sub):
        x, y, ilist = inputs
        return C_CALL % {"x": x, "y": y, "idx": ilist, "out": outputs[0], "fail": sub["fail"],
                         "ctx": sub["params"], "inplace": int(self.inplace),
                         "set": int(self.set_instead_of_inc)}


_c_version = []


def c_code_version():
    """(1, a number from scatter_kernel.source_digest()): any change to kernels, plan or launches recompiles."""
    if not _c_version:
        _c_version.append((1, int(sk.source_digest()[:12], 16)))
    return _c_version[0]


# What scatter_launch's C needs from its includer, here libgpuarray's.
C_HOOKS = """
typedef gpucontext td_context;
gpudata *td_alloc(td_context *ctx, size_t bytes, int *err) { return gpudata_alloc(ctx, bytes, NULL, 0, err); }
void td_release(gpudata *buffer) { gpudata_release(buffer); }
int td_read_uint32(unsigned int *value, gpudata *buffer) { return gpudata_read(value, buffer, 0, sizeof(*value)); }
"""

# out[idx] += y (or = y) for GPU arrays, out already x or its copy; 0, or 1 with a Python error set.
C_SCATTER = """
int td_scatter(PyGpuArrayObject *out, PyGpuArrayObject *y, PyGpuArrayObject *idx,
               int set_instead_of_inc, PyGpuContextObject *ctx) {
  td_problem p;
  unsigned int bad;
  int err;
  %(index_type)s value;
  if (td_describe(&p, PyGpuArray_NDIM(out), PyGpuArray_DIMS(out), PyGpuArray_STRIDES(out),
                  PyGpuArray_NDIM(y), PyGpuArray_DIMS(y), PyGpuArray_STRIDES(y),
                  GpuArray_ITEMSIZE(&out->ga), PyGpuArray_DIMS(idx)[0],
                  PyGpuArray_STRIDES(idx)[0], GpuArray_ITEMSIZE(&idx->ga))) {
    PyErr_SetString(PyExc_ValueError, "array is not broadcastable to correct shape");
    return 1;
  }
  if (p.K > TD_MAX_ROWS || p.N > TD_MAX_ROWS) {
    PyErr_Format(PyExc_NotImplementedError, "GpuDetAdvancedIncSubtensor1's C code handles at most %%d rows "
                 "and positions, not %%llu and %%llu", TD_MAX_ROWS, (unsigned long long)p.N,
                 (unsigned long long)p.K);
    return 1;
  }
  p.idx = idx->ga.data; p.idx_offset = idx->ga.offset;
  p.out = out->ga.data; p.out_offset = out->ga.offset;
  p.y = y->ga.data; p.y_offset = y->ga.offset;
  p.set_instead_of_inc = set_instead_of_inc;
  err = td_scatter_run(ctx->ctx, &p, %(rank_max)s, &bad);
  if (err != GA_NO_ERROR) {
    PyErr_Format(PyExc_RuntimeError, "GpuDetAdvancedIncSubtensor1: %%s", gpucontext_error(ctx->ctx, err));
    return 1;
  }
  if (bad == TD_NO_BAD)
    return 0;
  /* nothing was written: numpy's IndexError for the first index out of range */
  err = gpudata_read(&value, idx->ga.data,
                     (size_t)((ssize_t)idx->ga.offset + (ssize_t)bad * PyGpuArray_STRIDES(idx)[0]), sizeof(value));
  if (err != GA_NO_ERROR) {
    PyErr_Format(PyExc_RuntimeError, "GpuDetAdvancedIncSubtensor1: %%s", gpucontext_error(ctx->ctx, err));
    return 1;
  }
  if (%(unsigned)d)
    PyErr_Format(PyExc_IndexError, "index %%llu is out of bounds for axis 0 with size %%llu",
                 (unsigned long long)value, (unsigned long long)p.N);
  else
    PyErr_Format(PyExc_IndexError, "index %%lld is out of bounds for axis 0 with size %%llu",
                 (long long)value, (unsigned long long)p.N);
  return 1;
}
"""

# The node's code: out is x (inplace) or a copy of it, then the scatter into out.
C_CALL = """
if (%(inplace)d) {
  Py_XDECREF(%(out)s);
  %(out)s = %(x)s;
  Py_INCREF(%(out)s);
} else {
  %(out)s = theano_try_copy(%(out)s, %(x)s);
}
if (!%(out)s) {
  %(fail)s
}
if (td_scatter(%(out)s, %(y)s, %(idx)s, %(set)d, %(ctx)s)) {
  %(fail)s
}
"""


def local_gpu_det_incsubtensor1_inplace_function():
    """A local optimizer that makes GpuDetAdvancedIncSubtensor1 nodes inplace (registered by install)."""
    from theano.gof import local_optimizer

    @local_optimizer([GpuDetAdvancedIncSubtensor1], inplace=True)
    def local_gpu_det_incsubtensor1_inplace(node):
        if isinstance(node.op, GpuDetAdvancedIncSubtensor1) and not node.op.inplace:
            return [node.op.clone_inplace()(*node.inputs)]
        return False

    return local_gpu_det_incsubtensor1_inplace


# -- perform: the launches -------------------------------------------------

_kernels = {}


def compiled_kernels(context, dtype, index_dtype):
    """{kernel name: pygpu GpuKernel} for these dtypes, compiled once per context."""
    key = (id(context), dtype, index_dtype)
    if key not in _kernels:
        from pygpu import gpuarray

        types = {"size": gpuarray.SIZE, "ssize": gpuarray.SSIZE, "buffer": gpuarray.GpuArray,
                 "uint32": "uint32", "int32": "int32"}
        source = sk.kernel_source(dtype, index_dtype)
        flags = sk.kernel_flags(dtype, index_dtype)
        _kernels[key] = dict(
            (name, gpuarray.GpuKernel(source, name, [types[t] for t in sk.ARGUMENTS[name]],
                                      context=context, **flags))
            for name in sk.KERNEL_NAMES)
    return _kernels[key]


def element_strides(array, shape):
    """`array`'s strides in elements once broadcast to `shape` (0 along broadcast axes)."""
    padded = (1,) * (len(shape) - array.ndim) + tuple(array.shape)
    strides = (0,) * (len(shape) - array.ndim) + tuple(array.strides)
    result = []
    for have, want, stride in zip(padded, shape, strides):
        if have == want and have != 1:
            result.append(stride // array.itemsize)
        elif have == 1:
            result.append(0)
        else:
            raise ValueError("array is not broadcastable to correct shape")
    return result


def scatter(x, y, ilist, set_instead_of_inc, inplace, context):
    """The op's result for GPU arrays x, y, ilist (pygpu GpuArrays)."""
    from pygpu import gpuarray

    n_rows, n_positions = x.shape[0], ilist.shape[0]
    n_columns = x.shape[1] if x.ndim == 2 else 1
    if max(n_rows, n_positions) > sk.MAX_ROWS:  # beyond uint32 keys: the same order on the host
        out = scatter_rows(np.asarray(x).copy(), np.asarray(y), np.asarray(ilist), set_instead_of_inc)
        return gpuarray.array(out, context=context)
    y_s0, y_s1 = (element_strides(y, (n_positions,) + tuple(x.shape[1:])) + [0])[:2]
    plan = sk.launch_plan(n_positions, n_rows, n_columns)
    out = x if inplace else x.copy()
    if not plan:
        return out
    kernels = compiled_kernels(context, np.dtype(x.dtype).name, np.dtype(ilist.dtype).name)
    buffers = work_buffers(context, n_positions, sk.uses_rank_sort(plan))
    out_s0, out_s1 = (element_strides(out, tuple(out.shape)) + [0])[:2]  # the copy's strides, not x's
    keys, pos, first_bad = buffers["keys"], buffers["pos"], buffers["first_bad"]
    idx_stride = ilist.strides[0] // ilist.itemsize
    source = 0
    for name, blocks, threads, shift in plan:
        if name == "td_rank":
            kernels[name](n_positions, n_rows, ilist, ilist.offset, idx_stride,
                          keys[0], pos[0], first_bad, gs=blocks, ls=threads)
        elif name == "td_rows_counts":
            kernels[name](n_positions, n_rows, ilist, ilist.offset, idx_stride, keys[0], pos[0],
                          buffers["counts"], buffers["tiles"], buffers["tile_bad"], gs=blocks, ls=threads)
        elif name == "td_digit_counts":
            kernels[name](n_positions, shift, keys[source], buffers["counts"], buffers["tiles"],
                          gs=blocks, ls=threads)
        elif name == "td_scan":
            kernels[name](buffers["counts"], buffers["counts"].size, buffers["tile_bad"], buffers["tiles"],
                          first_bad, gs=blocks, ls=threads)
        elif name == "td_scatter":
            kernels[name](n_positions, shift, keys[source], pos[source], keys[1 - source], pos[1 - source],
                          buffers["counts"], buffers["tiles"], gs=blocks, ls=threads)
            source = 1 - source
        elif name == "td_apply":
            kernels[name](n_positions, n_columns, keys[source], pos[source],
                          out, out.offset, out_s0, out_s1, y, y.offset, y_s0, y_s1,
                          int(set_instead_of_inc), first_bad, gs=blocks, ls=threads)
        LAUNCHES["kernels"] += 1
    LAUNCHES["calls"] += 1
    bad = int(np.asarray(first_bad)[0])  # the call's one sync
    if bad != NO_BAD_POSITION:  # td_apply wrote nothing: x is as it was
        value = np.asarray(ilist[bad:bad + 1])[0]
        raise IndexError("index %d is out of bounds for axis 0 with size %d" % (value, n_rows))
    return out


LAUNCHES = {"calls": 0, "kernels": 0}  # calls of scatter that launched, and their launches (the benchmark's count)
CACHED_SIZES = 4  # work buffers kept per context: the sizes of the last few calls
_buffers = OrderedDict()


def work_buffers(context, n_positions, rank_sort):
    """keys, pos (uint32, K each; twice for the radix sort's ping-pong), the per-tile digit
    counts and smallest bad positions (radix sort) and first_bad: O(K) in all. No call
    initialises them: td_rank or td_scan writes first_bad, the kernels write the rest.

    Reused by the next calls of the same size on the same context (their launches
    follow on the context's stream, and each call ends with a sync), so a call
    allocates nothing; the sizes of the last CACHED_SIZES calls are kept.
    Fresh allocations start at offset 0, so the kernels get them without an offset.
    """
    from pygpu import gpuarray

    key = (id(context), n_positions, rank_sort)
    if key in _buffers:
        _buffers.move_to_end(key)
        return _buffers[key]
    copies = 1 if rank_sort else 2
    tiles = 0 if rank_sort else sk.tile_count(n_positions)
    buffers = {
        "keys": [gpuarray.empty((n_positions,), dtype="uint32", context=context) for _ in range(copies)],
        "pos": [gpuarray.empty((n_positions,), dtype="uint32", context=context) for _ in range(copies)],
        "first_bad": gpuarray.empty((1,), dtype="uint32", context=context),
        "tiles": tiles,
    }
    if not rank_sort:
        buffers["counts"] = gpuarray.empty((sk.RADIX * tiles,), dtype="uint32", context=context)
        buffers["tile_bad"] = gpuarray.empty((tiles,), dtype="uint32", context=context)
    _buffers[key] = buffers
    while len(_buffers) > CACHED_SIZES:
        _buffers.popitem(last=False)
    return buffers
