"""GpuDetAdvancedIncSubtensor1's host side (gpu_incsubtensor.scatter) against a stand-in for pygpu.

On a GPU, scatter() hands buffers, byte offsets and element strides to the six
kernels through pygpu's GpuKernel. Here a fake pygpu keeps every array in a flat
byte buffer (like gpudata: a kernel gets the allocation, not the view's offset)
and runs each kernel as a line-by-line Python transcription of its CUDA source,
after checking the argument list against the kernel's declared types. So the
argument order, offsets, strides, ping-pong buffers and the read-back of the
first bad index are checked without a GPU; the kernels' arithmetic is checked by
the numpy model (test_scatter_kernel_model.py) and NVRTC (test_scatter_kernel_compile.py).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from incsubtensor_cases import CASES, DTYPES, expected_result, same_bits
from scatter_stand_in import KERNELS, FakeGpuArray, as_size, outside_strided_x, strided_x

from theano_det.ops import scatter_kernel as sk

SIZE, SSIZE = "size_t", "ssize_t"


class FakeGpuKernel:
    compiled = []
    launched = []

    def __init__(self, source, name, types_, context=None, **flags):
        assert "#include \"cluda.h\"" in source and "KERNEL void %s(" % name in source
        assert set(flags) == {"have_double", "have_half", "have_small"}
        self.name, self.types = name, types_
        self.dtype = [d for d, c in sk.CTYPES.items() if "typedef %s td_value;" % c in source][0]
        self.index_dtype = [d for d, c in sk.CTYPES.items() if "typedef %s td_index;" % c in source][0]
        FakeGpuKernel.compiled.append((name, self.dtype, self.index_dtype))

    def __call__(self, *args, gs=None, ls=None, n=None, shared=0):
        assert n is None and isinstance(gs, int) and isinstance(ls, int) and 0 < gs <= sk.MAX_BLOCKS
        assert len(args) == len(self.types), (self.name, len(args), len(self.types))
        values = []
        for arg, kind in zip(args, self.types):
            if kind is FakeGpuArray:
                assert isinstance(arg, FakeGpuArray), (self.name, arg)
                values.append(arg.data)  # the allocation: the kernel adds the offset itself
            elif kind == SIZE:
                values.append(as_size(arg))
            else:
                assert isinstance(arg, (int, np.integer)), (self.name, kind, arg)
                values.append(int(arg))
        self.gs, self.ls = gs, ls
        FakeGpuKernel.launched.append(self.name)
        KERNELS[self.name](self, *values)


ALLOCATED = []  # the shapes of gpuarray.empty's allocations


@pytest.fixture(params=["planned sort", "radix sort"])
def scatter(monkeypatch, request):
    """gpu_incsubtensor.scatter on the fake pygpu, with the plan's sort or the radix sort forced."""
    if request.param == "radix sort":
        monkeypatch.setattr(sk, "RANK_MAX", 0)
    return fake_scatter(monkeypatch)


def fake_scatter(monkeypatch):
    from theano_det.ops import gpu_incsubtensor  # imports Theano's gpuarray backend, without pygpu

    gpuarray = types.SimpleNamespace(
        SIZE=SIZE, SSIZE=SSIZE, GpuArray=FakeGpuArray, GpuKernel=FakeGpuKernel,
        # fresh allocations start at offset 0, as libgpuarray's do (the work buffers rely on it)
        array=lambda obj, dtype=None, context=None: FakeGpuArray.from_numpy(np.asarray(obj, dtype=dtype), pad=0),
        empty=lambda shape, dtype, context=None: ALLOCATED.append(shape) or
        FakeGpuArray.from_numpy(np.full(shape, 0xAB, dtype=dtype), pad=0))
    monkeypatch.setitem(sys.modules, "pygpu", types.SimpleNamespace(gpuarray=gpuarray))
    monkeypatch.setitem(sys.modules, "pygpu.gpuarray", gpuarray)
    monkeypatch.setattr(gpu_incsubtensor, "_kernels", {})
    monkeypatch.setattr(gpu_incsubtensor, "_buffers", gpu_incsubtensor.OrderedDict())
    return gpu_incsubtensor.scatter


SMALL = [case for case in CASES if case.name not in ("one long run (all indices equal)",)]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "uint64"])
@pytest.mark.parametrize("case", SMALL, ids=repr)
def test_scatter_launches_the_kernels_with_the_right_arguments(scatter, case, dtype):
    x, y, idx = case.make(dtype)
    x_gpu, y_gpu, idx_gpu = (FakeGpuArray.from_numpy(a) for a in (x, y, idx))
    if case.out_of_range:
        with pytest.raises(IndexError) as numpy_error:
            expected_result(x.copy(), y, idx, case.set_instead_of_inc)
        for inplace in (False, True):
            with pytest.raises(IndexError) as error:
                scatter(x_gpu, y_gpu, idx_gpu, case.set_instead_of_inc, inplace, "ctx")
            assert str(error.value) == str(numpy_error.value)
            assert same_bits(np.asarray(x_gpu), x)
        return
    expected = expected_result(x, y, idx, case.set_instead_of_inc)
    FakeGpuKernel.launched.clear()
    assert same_bits(np.asarray(scatter(x_gpu, y_gpu, idx_gpu, case.set_instead_of_inc, False, "ctx")), expected)
    n_columns = x.shape[1] if x.ndim == 2 else 1
    assert FakeGpuKernel.launched == [step[0] for step in sk.launch_plan(len(idx), len(x), n_columns)]
    assert same_bits(np.asarray(x_gpu), x)
    out = scatter(x_gpu, y_gpu, idx_gpu, case.set_instead_of_inc, True, "ctx")
    assert out is x_gpu and same_bits(np.asarray(x_gpu), expected)


def test_views_with_offsets_and_strides(scatter):
    rng = np.random.RandomState(3)
    base = rng.standard_normal((12, 8)).astype(np.float32)
    whole, x, host_x = strided_x(base)
    idx_all = FakeGpuArray.from_numpy(np.array([9, 0, 4, 0, -1, 7, 0], dtype=np.int32))
    idx = idx_all[1:4]  # [0, 4, 0]: a view with an offset
    y = FakeGpuArray.from_numpy(rng.standard_normal(3).astype(np.float32))  # broadcast over positions
    expected = expected_result(host_x, np.asarray(y), np.array([0, 4, 0]), False)
    assert same_bits(np.asarray(scatter(x, y, idx, False, False, "ctx")), expected)
    scatter(x, y, idx, False, True, "ctx")  # inplace: into the view, nothing else of the buffer
    after = np.asarray(whole)
    assert same_bits(after[2::2][:5, 1:7:2], expected)
    assert same_bits(after[outside_strided_x()], base[outside_strided_x()])


def test_every_dtype_compiles_one_source_and_the_kernels_are_reused(scatter):
    FakeGpuKernel.compiled.clear()
    for dtype in DTYPES:
        x, y, idx = CASES[0].make(dtype)
        for _ in range(2):
            scatter(*(FakeGpuArray.from_numpy(a) for a in (x, y, idx)), False, False, "ctx")
    assert len(FakeGpuKernel.compiled) == len(DTYPES) * len(sk.KERNEL_NAMES)


def test_launches_per_call_are_the_plans_and_counted(scatter):
    from theano_det.ops import gpu_incsubtensor

    rng = np.random.RandomState(2)
    for k in (0, 1, 300, 2000):
        x = FakeGpuArray.from_numpy(np.zeros((700, 2), np.float32))
        y = FakeGpuArray.from_numpy(rng.standard_normal((k, 2)).astype(np.float32))
        idx = FakeGpuArray.from_numpy(rng.randint(0, 700, size=k))
        before = dict(gpu_incsubtensor.LAUNCHES)
        FakeGpuKernel.launched.clear()
        scatter(x, y, idx, False, False, "ctx")
        plan = sk.launch_plan(k, 700, 2)
        assert FakeGpuKernel.launched == [step[0] for step in plan]
        assert gpu_incsubtensor.LAUNCHES["kernels"] - before["kernels"] == len(plan)
        assert gpu_incsubtensor.LAUNCHES["calls"] - before["calls"] == (1 if plan else 0)
        assert len(plan) == (0 if k == 0 else 2 if k <= sk.RANK_MAX else 3 * 2 + 1)  # 2 passes: 700 rows


def test_work_buffers_are_reused_by_calls_of_the_same_size(scatter):
    from theano_det.ops import gpu_incsubtensor

    x = FakeGpuArray.from_numpy(np.zeros((9, 3), np.float32))
    problems = {k: (FakeGpuArray.from_numpy(np.ones((k, 3), np.float32)),
                    FakeGpuArray.from_numpy(np.arange(k) % 9)) for k in (4, 5, 6, 7, 8, 30)}
    ALLOCATED.clear()
    scatter(x, *problems[4], False, False, "ctx")
    first = len(ALLOCATED)
    assert first > 0
    scatter(x, *problems[4], False, False, "ctx")
    assert len(ALLOCATED) == first  # the second call of the size allocates nothing
    for k in (5, 6, 7, 8, 30):  # more sizes than are kept: the oldest go
        scatter(x, *problems[k], False, False, "ctx")
    assert len(gpu_incsubtensor._buffers) == gpu_incsubtensor.CACHED_SIZES
    assert all(key[1] != 4 for key in gpu_incsubtensor._buffers)
    expected = expected_result(np.zeros((9, 3), np.float32), np.ones((4, 3), np.float32), np.arange(4) % 9, False)
    assert same_bits(np.asarray(scatter(x, *problems[4], False, False, "ctx")), expected)


def test_a_y_that_does_not_broadcast_is_refused(scatter):
    x = FakeGpuArray.from_numpy(np.zeros((4, 3), np.float32))
    y = FakeGpuArray.from_numpy(np.zeros((2, 2), np.float32))
    idx = FakeGpuArray.from_numpy(np.array([0, 1]))
    with pytest.raises(ValueError, match="array is not broadcastable to correct shape"):
        scatter(x, y, idx, False, False, "ctx")


def test_the_gpu_probes_kernel_checks_pass_on_the_stand_in_through_both_sorts(monkeypatch):
    # tests/gpu_scatter_probe.py's loop, on a few cases and dtypes: what the GPU run will execute
    import gpu_scatter_probe

    fake_scatter(monkeypatch)
    monkeypatch.setattr(gpu_scatter_probe, "CASES", [CASES[0], CASES[8], CASES[12], CASES[14]])
    monkeypatch.setattr(gpu_scatter_probe, "DTYPES", ["float32", "int8"])
    monkeypatch.setattr(gpu_scatter_probe, "INDEX_DTYPES", ["int32", "uint16"])
    FakeGpuKernel.launched.clear()
    checks = gpu_scatter_probe.kernel_checks("ctx", runs=2)
    assert len(checks) == 2 * (4 * 2) + 2 * 2
    assert [check for check in checks if not check["ok"]] == []
    assert sum(check["name"].endswith("/ radix sort") for check in checks) == len(checks) // 2
    assert "td_rank" in FakeGpuKernel.launched and "td_digit_counts" in FakeGpuKernel.launched
    assert sk.RANK_MAX == 16384  # restored after the forced radix sorts


def test_the_benchmarks_gpu_host_figures_on_the_stand_in(monkeypatch, capsys):
    # benchmarks/incsubtensor.py's GPU-only parts: scatter() timed alone, launches counted and printed
    import theano.gpuarray.type

    from conftest import load_script

    bench = load_script("benchmarks/incsubtensor.py", "incsubtensor_benchmark")
    fake_scatter(monkeypatch)
    monkeypatch.setattr(theano.gpuarray.type, "get_context", lambda name: "ctx")
    x, y, idx = bench.make_problem(300, 40, 3, 40, seed=1)
    counted = bench.launch_counter()
    FakeGpuKernel.launched.clear()
    seconds = bench.time_scatter(x, y, idx, min_seconds=0)
    assert seconds > 0 and counted() == 2 == len(FakeGpuKernel.launched) / 2  # warm-up call + one timed call
    FakeGpuKernel.launched.clear()
    radix_seconds = bench.time_scatter(x, y, idx, min_seconds=0, rank_max=0)
    assert radix_seconds > 0 and FakeGpuKernel.launched.count("td_rows_counts") == 2 and sk.RANK_MAX == 16384
    assert "td_rank" not in FakeGpuKernel.launched
    args = bench.parse_args(["--sizes", "300,20000", "--rows", "40", "--cols", "3", "--distinct", "40"])
    results = {(300, bench.OURS_GPU): bench.Result(1e-3, True, 1, 0.0, True, 2, seconds, radix_seconds, "C", 3e-5),
               (20000, bench.OURS_GPU): bench.Result(1e-3, True, 1, 0.0, True, 2, 5e-5, host="Python")}
    bench.print_launches(args, results)
    out = capsys.readouterr().out
    assert "| 300 | 2 | 4 | from C | 0.03 ms | 2 | %s | %s |" % (
        bench.format_ms(seconds), bench.format_ms(radix_seconds)) in out
    # 40 rows: one radix pass
    assert "| 20 000 | 4 | 4 | from Python (perform: no C code) | not measured | 2 (differs from the plan) " \
        "| 0.05 ms | not measured |" in out


def test_the_gpu_probes_graph_script_runs_on_the_cpu(isolated_home):
    # tests/gpu_scatter_probe.py's Theano graphs, on the CPU: the script runs to its report (a GPU
    # minute is never spent on a typo), the probe refuses to judge it without a GPU, and every
    # graph has numpy's bits with Theano's CPU ops (no GPU op, so no host to name)
    import json
    import subprocess
    import sys

    import gpu_scatter_probe
    from conftest import ROOT

    done = subprocess.run([sys.executable, "-c", gpu_scatter_probe.GRAPH_SCRIPT, str(isolated_home / "none.json")],
                          capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["gpu"] is False and report["install"]["kernel_ready"] is False
    for name in ("inc", "set", "inc small", "inc 1-d"):
        assert report[name]["same_bits"] and report[name]["distinct"] == 1 and report[name]["hosts"] == []
    assert report["inplace"]["same_bits"] and report["inplace"]["hosts"] == []
    assert report["out_of_range"] == "index 500 is out of bounds for axis 0 with size 500"
