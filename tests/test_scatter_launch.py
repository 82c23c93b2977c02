"""GpuDetAdvancedIncSubtensor1's C host side (scatter_launch.py) runs, and is checked, without a GPU.

The op's C code is scatter_launch.host_source() inside the struct Theano
generates, beside the launch wrappers GpuKernelBase writes from the kernels'
argument lists (`int td_rank_call(unsigned int nd, size_t *gs, size_t *ls,
size_t shared, size_t arg0, ...)`) and libgpuarray's allocation and read-back.
Here the same source is compiled by g++ inside a struct of the same shape, whose
wrappers and hooks call back into Python: the launches run the kernels'
line-by-line transcriptions (scatter_stand_in.py) on flat byte buffers, so the C
plan, argument lists, strides, ping-pong buffers, allocations, releases and the
read-back of the first bad position are checked end to end, on every case.
(The op's own glue around it is compiled against libgpuarray's and pygpu's
headers by test_scatter_op_source.py.)
"""

from __future__ import annotations

import ctypes
import subprocess
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from incsubtensor_cases import CASES, expected_result, same_bits
from scatter_stand_in import KERNELS, FakeGpuArray, outside_strided_x, strided_x, typed

from theano_det.ops import scatter_kernel as sk
from theano_det.ops import scatter_launch

C_TYPES = {"size": "size_t", "ssize": "ssize_t", "buffer": "gpudata *", "uint32": "npy_uint32", "int32": "npy_int32"}
LAUNCH_FAILED_IN_PYTHON = 97

HARNESS = r"""
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
typedef struct td_stand_in_buffer gpudata;  /* a handle: the Python side keeps the bytes */
typedef void td_context;
typedef uint32_t npy_uint32;
typedef int32_t npy_int32;

extern "C" {
typedef struct {
  int (*launch)(int kernel, size_t gs, size_t ls, const long long *args, int n_args);
  long long (*alloc)(size_t bytes);
  void (*release)(long long handle);
  int (*read)(long long handle, unsigned int *value);
} td_hooks;
}
static td_hooks hooks;

struct td_host {
%(wrappers)s
  gpudata *td_alloc(td_context *ctx, size_t bytes, int *err) {
    long long handle = hooks.alloc(bytes);
    if (handle <= 0) { *err = 2; return NULL; }
    return (gpudata *)(intptr_t)handle;
  }
  void td_release(gpudata *buffer) { hooks.release((long long)(intptr_t)buffer); }
  int td_read_uint32(unsigned int *value, gpudata *buffer) { return hooks.read((long long)(intptr_t)buffer, value); }
%(host)s
};

extern "C" int td_test_plan(size_t K, size_t N, size_t D, size_t rank_max,
                            int *kernels, size_t *blocks, size_t *threads, unsigned int *shifts) {
  td_host host;
  td_host::td_step steps[TD_MAX_STEPS];
  int n = host.td_plan(K, N, D, rank_max, steps);
  for (int i = 0; i < n; ++i) {
    kernels[i] = steps[i].kernel; blocks[i] = steps[i].blocks;
    threads[i] = steps[i].threads; shifts[i] = steps[i].shift;
  }
  return n;
}

/* what the op's td_scatter does before and around td_scatter_run: -1 when y does not broadcast */
extern "C" int td_test_run(const td_hooks *given, unsigned int x_nd, const size_t *x_dims, const ssize_t *x_strides,
                           unsigned int y_nd, const size_t *y_dims, const ssize_t *y_strides, size_t itemsize,
                           size_t K, ssize_t idx_stride, size_t idx_itemsize,
                           long long out, size_t out_offset, long long y, size_t y_offset,
                           long long idx, size_t idx_offset, int set_instead_of_inc, size_t rank_max,
                           long long *described, unsigned int *bad) {
  td_host host;
  td_host::td_problem p;
  hooks = *given;
  if (host.td_describe(&p, x_nd, x_dims, x_strides, y_nd, y_dims, y_strides, itemsize, K, idx_stride, idx_itemsize))
    return -1;
  long long fields[] = {(long long)p.K, (long long)p.N, (long long)p.D, (long long)p.idx_stride,
                        (long long)p.out_s0, (long long)p.out_s1, (long long)p.y_s0, (long long)p.y_s1};
  for (int i = 0; i < 8; ++i)
    described[i] = fields[i];
  p.out = (gpudata *)(intptr_t)out; p.out_offset = out_offset;
  p.y = (gpudata *)(intptr_t)y; p.y_offset = y_offset;
  p.idx = (gpudata *)(intptr_t)idx; p.idx_offset = idx_offset;
  p.set_instead_of_inc = set_instead_of_inc;
  return host.td_scatter_run(NULL, &p, rank_max, bad);
}
"""


def wrapper(name):
    """A launch wrapper of the signature Theano's GpuKernelBase generates, calling hooks.launch."""
    kinds = sk.ARGUMENTS[name]
    params = ", ".join("%s arg%d" % (C_TYPES[kind], i) for i, kind in enumerate(kinds))
    values = ", ".join("(long long)%sarg%d" % ("(intptr_t)" if kind == "buffer" else "", i)
                       for i, kind in enumerate(kinds))
    return """  int %(name)s_call(unsigned int nd, size_t *gs, size_t *ls, size_t shared, %(params)s) {
    long long args[] = {%(values)s};
    if (nd != 1 || shared != 0) return 98;
    return hooks.launch(%(id)d, gs[0], ls[0], args, %(n)d);
  }""" % {"name": name, "params": params, "values": values, "id": scatter_launch.KERNEL_IDS[name], "n": len(kinds)}


class Hooks(ctypes.Structure):
    _fields_ = [
        ("launch", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t,
                                    ctypes.POINTER(ctypes.c_longlong), ctypes.c_int)),
        ("alloc", ctypes.CFUNCTYPE(ctypes.c_longlong, ctypes.c_size_t)),
        ("release", ctypes.CFUNCTYPE(None, ctypes.c_longlong)),
        ("read", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_longlong, ctypes.POINTER(ctypes.c_uint))),
    ]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scatter-launch")
    source = folder / "harness.cpp"
    source.write_text(HARNESS % {"wrappers": "\n".join(wrapper(name) for name in sk.KERNEL_NAMES),
                                 "host": scatter_launch.host_source()})
    built = subprocess.run(["g++", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(folder / "harness.so"),
                            str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return ctypes.CDLL(str(folder / "harness.so"))


def c_plan(library, k, n, d, rank_max):
    steps = scatter_launch.MAX_STEPS
    kernels, shifts = (ctypes.c_int * steps)(), (ctypes.c_uint * steps)()
    blocks, threads = (ctypes.c_size_t * steps)(), (ctypes.c_size_t * steps)()
    count = library.td_test_plan(ctypes.c_size_t(k), ctypes.c_size_t(n), ctypes.c_size_t(d),
                                 ctypes.c_size_t(rank_max), kernels, blocks, threads, shifts)
    names = sk.KERNEL_NAMES
    return [(names[kernels[i]], blocks[i], threads[i], None if names[kernels[i]] in ("td_rank", "td_apply")
             else shifts[i]) for i in range(count)]


@settings(max_examples=300, deadline=None)
@given(k=st.one_of(st.integers(0, 70000), st.integers(0, 2 ** 31 - 1)),
       n=st.one_of(st.integers(0, 70000), st.integers(0, 2 ** 31 - 1)),
       d=st.one_of(st.integers(0, 600), st.integers(0, 2 ** 20)),
       rank_max=st.sampled_from([sk.RANK_MAX, 0, 1000]))
def test_the_c_plan_is_launch_plans(library, k, n, d, rank_max):
    assert c_plan(library, k, n, d, rank_max) == sk.launch_plan(k, n, d, rank_max)


@pytest.mark.parametrize("sizes", sk.DIGEST_PLANS)
def test_the_c_plan_is_launch_plans_on_the_recorded_sizes(library, sizes):
    assert c_plan(library, *sizes, sk.RANK_MAX) == sk.launch_plan(*sizes)
    assert len(c_plan(library, *sizes, 0)) <= scatter_launch.MAX_STEPS


class StandInGpu:
    """The Python side of the hooks: buffers by handle, the kernels' transcriptions, a log."""

    def __init__(self, dtype, index_dtype, fail_launch=None, fail_alloc=None):
        self.dtype, self.index_dtype = np.dtype(dtype).name, np.dtype(index_dtype).name
        self.buffers, self.live, self.allocated, self.launched, self.errors = {}, set(), [], [], []
        self.fail_launch, self.fail_alloc = fail_launch, fail_alloc
        self.hooks = Hooks(Hooks._fields_[0][1](self.launch), Hooks._fields_[1][1](self.alloc),
                           Hooks._fields_[2][1](self.release), Hooks._fields_[3][1](self.read))

    def register(self, data):
        handle = len(self.buffers) + 1
        self.buffers[handle] = data
        return handle

    def alloc(self, size):
        if self.fail_alloc is not None and len(self.allocated) == self.fail_alloc:
            return 0
        handle = self.register(np.full(size, 0xAB, dtype=np.uint8))  # not initialised: the kernels write it
        self.live.add(handle)
        self.allocated.append(size)
        return handle

    def release(self, handle):
        if handle not in self.live:
            self.errors.append("released %d, which is not a live allocation" % handle)
        self.live.discard(handle)

    def read(self, handle, value):
        value[0] = int(typed(self.buffers[handle], np.uint32)[0])
        return 0

    def launch(self, kernel, gs, ls, args, n_args):
        try:
            name = sk.KERNEL_NAMES[kernel]
            kinds = sk.ARGUMENTS[name]
            assert n_args == len(kinds), (name, n_args)
            assert 0 < gs <= sk.MAX_BLOCKS and ls > 0, (name, gs, ls)
            values = [self.decode(kind, args[i]) for i, kind in enumerate(kinds)]
            self.launched.append(name)
            if self.fail_launch is not None and len(self.launched) == self.fail_launch:
                return 5
            KERNELS[name](types.SimpleNamespace(gs=gs, ls=ls, dtype=self.dtype, index_dtype=self.index_dtype),
                          *values)
            return 0
        except Exception as error:  # an exception cannot cross into C: report it
            self.errors.append("%s: %r" % (sk.KERNEL_NAMES[kernel], error))
            return LAUNCH_FAILED_IN_PYTHON

    def decode(self, kind, value):
        if kind == "buffer":
            assert value in self.buffers, "not a buffer: %d" % value
            return self.buffers[value]
        if kind in ("size", "uint32"):
            assert value >= 0, (kind, value)
        return int(value)


def run(library, gpu, out, y, idx, set_instead_of_inc, rank_max=sk.RANK_MAX):
    """td_describe + td_scatter_run on stand-in GPU arrays: (error code, first bad, the described fields)."""
    def dims(array):
        return (ctypes.c_size_t * max(array.ndim, 1))(*array.shape), \
            (ctypes.c_ssize_t * max(array.ndim, 1))(*array.strides)

    (x_dims, x_strides), (y_dims, y_strides) = dims(out), dims(y)
    described, bad = (ctypes.c_longlong * 8)(), ctypes.c_uint()
    handles = [gpu.register(array.data) for array in (out, y, idx)]
    code = library.td_test_run(
        ctypes.byref(gpu.hooks), out.ndim, x_dims, x_strides, y.ndim, y_dims, y_strides,
        ctypes.c_size_t(out.itemsize), ctypes.c_size_t(idx.shape[0]), ctypes.c_ssize_t(idx.strides[0]),
        ctypes.c_size_t(idx.itemsize), ctypes.c_longlong(handles[0]), ctypes.c_size_t(out.offset),
        ctypes.c_longlong(handles[1]), ctypes.c_size_t(y.offset), ctypes.c_longlong(handles[2]),
        ctypes.c_size_t(idx.offset), int(set_instead_of_inc), ctypes.c_size_t(rank_max), described, ctypes.byref(bad))
    assert gpu.errors == []
    assert gpu.live == set(), "a work buffer was not released"
    return code, bad.value, list(described)


SMALL = [case for case in CASES if case.name != "one long run (all indices equal)"]


@pytest.mark.parametrize("rank_max", [sk.RANK_MAX, 0], ids=["planned sort", "radix sort"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "uint64"])
@pytest.mark.parametrize("case", SMALL, ids=repr)
def test_the_c_host_side_gives_numpys_bits(library, case, dtype, rank_max):
    x, y, idx = case.make(dtype)
    gpu = StandInGpu(dtype, idx.dtype)
    out = FakeGpuArray.from_numpy(x)  # the op's out: x itself (inplace) or its copy
    code, bad, _ = run(library, gpu, out, FakeGpuArray.from_numpy(y), FakeGpuArray.from_numpy(idx),
                       case.set_instead_of_inc, rank_max)
    assert code == 0
    n_columns = x.shape[1] if x.ndim == 2 else 1
    plan = sk.launch_plan(len(idx), len(x), n_columns, rank_max)
    assert gpu.launched == [step[0] for step in plan]
    if case.out_of_range:
        with pytest.raises(IndexError):
            expected_result(x.copy(), y, idx, case.set_instead_of_inc)
        n_rows = len(x)
        assert bad == min(i for i, v in enumerate(idx) if not -n_rows <= v < n_rows)
        assert same_bits(np.asarray(out), x)  # nothing written
        return
    assert bad == scatter_launch.NO_BAD_POSITION
    assert same_bits(np.asarray(out), expected_result(x, y, idx, case.set_instead_of_inc))
    # O(K) work memory: keys and pos (twice for the radix sort), counts and tile minima, first_bad
    k = len(idx)
    if plan:
        tiles = sk.tile_count(k)
        expected = [4 * k, 4 * k, 4] if sk.uses_rank_sort(plan) else \
            [4 * k] * 4 + [4 * sk.RADIX * tiles, 4 * tiles, 4]
        assert gpu.allocated == expected
    else:
        assert gpu.allocated == []


def test_views_with_offsets_and_negative_strides(library):
    rng = np.random.RandomState(3)
    base = rng.standard_normal((12, 8)).astype(np.float32)
    whole, out, host_x = strided_x(base)
    idx_all = FakeGpuArray.from_numpy(np.array([9, 0, 4, 0, -1, 7, 0], dtype=np.int32))
    idx = FakeGpuArray(idx_all.data, idx_all.offset + 5 * 4, (3,), (-8,), np.int32)  # backwards, every other one
    host_idx = np.asarray(idx)
    assert list(host_idx) == [7, 0, 0]
    y_base = FakeGpuArray.from_numpy(rng.standard_normal((3, 4)).astype(np.float32))
    y = FakeGpuArray(y_base.data, y_base.offset + 4, (3,), (4,), np.float32)  # broadcast over positions
    host_y = np.asarray(y)
    gpu = StandInGpu("float32", "int32")
    with pytest.raises(IndexError):  # 7 is out of range for 5 rows
        expected_result(host_x, host_y, host_idx, False)
    code, bad, described = run(library, gpu, out, y, idx, False)
    assert code == 0 and bad == 0 and described == [3, 5, 3, -2, 16, 2, 0, 1]
    assert same_bits(np.asarray(whole), base)  # nothing written
    idx = FakeGpuArray(idx_all.data, idx_all.offset + 3 * 4, (3,), (-4,), np.int32)  # [0, 4, 0]
    host_idx = np.asarray(idx)
    assert list(host_idx) == [0, 4, 0]
    expected = expected_result(host_x, host_y, host_idx, False)
    code, bad, _ = run(library, gpu, out, y, idx, False)
    assert code == 0 and bad == scatter_launch.NO_BAD_POSITION
    after = np.asarray(whole)
    assert same_bits(after[2::2][:5, 1:7:2], expected)
    assert same_bits(after[outside_strided_x()], base[outside_strided_x()])


@pytest.mark.parametrize("x_shape,y_shape,ok", [
    ((6, 4), (3, 4), True), ((6, 4), (1, 4), True), ((6, 4), (4,), True), ((6, 4), (3, 1), True),
    ((6, 4), (), True), ((6, 4), (2, 4), False), ((6, 4), (3, 2), False), ((6, 4), (5,), False),
    ((6,), (3,), True), ((6,), (), True), ((6,), (1,), True), ((6,), (2,), False),
])
def test_y_is_broadcast_as_the_python_side_does_or_refused(library, x_shape, y_shape, ok):
    from theano_det.ops.gpu_incsubtensor import element_strides

    x = FakeGpuArray.from_numpy(np.zeros(x_shape, np.float32))
    y = FakeGpuArray.from_numpy(np.ones(y_shape, np.float32))
    idx = FakeGpuArray.from_numpy(np.array([0, 5, 0]))
    gpu = StandInGpu("float32", "int64")
    code, _, described = run(library, gpu, x, y, idx, False)
    if not ok:
        assert code == -1 and gpu.launched == [] and gpu.allocated == []
        with pytest.raises(ValueError):
            element_strides(y, (3,) + x_shape[1:])
        return
    assert code == 0
    y_strides = (element_strides(y, (3,) + x_shape[1:]) + [0])[:2]
    assert described[6:] == y_strides
    expected = expected_result(np.zeros(x_shape, np.float32), np.ones(y_shape, np.float32), np.array([0, 5, 0]), False)
    assert same_bits(np.asarray(x), expected)


@pytest.mark.parametrize("rank_max", [sk.RANK_MAX, 0], ids=["planned sort", "radix sort"])
def test_a_failed_launch_stops_the_call_and_releases_the_buffers(library, rank_max):
    x, y, idx = CASES[8].make("float32")  # two radix passes: 7 launches when forced
    gpu = StandInGpu("float32", idx.dtype, fail_launch=2)
    out = FakeGpuArray.from_numpy(x)
    code, _, _ = run(library, gpu, out, FakeGpuArray.from_numpy(y), FakeGpuArray.from_numpy(idx), False, rank_max)
    assert code == 5 and len(gpu.launched) == 2  # nothing launched after the failure
    assert same_bits(np.asarray(out), x)


@pytest.mark.parametrize("fail_at", [0, 1, 3, 6])
def test_a_failed_allocation_launches_nothing_and_releases_the_others(library, fail_at):
    x, y, idx = CASES[8].make("float32")
    gpu = StandInGpu("float32", idx.dtype, fail_alloc=fail_at)
    out = FakeGpuArray.from_numpy(x)
    code, _, _ = run(library, gpu, out, FakeGpuArray.from_numpy(y), FakeGpuArray.from_numpy(idx), False, 0)
    assert code == 2 and gpu.launched == [] and len(gpu.allocated) == fail_at
    assert same_bits(np.asarray(out), x)
