"""The deterministic scatter kernel compiles as libgpuarray compiles it, for sm_60 to sm_90, without a GPU.

The exact source the op hands to libgpuarray (scatter_kernel.kernel_source), with
the "cluda.h" that Debian's libgpuarray3 0.7.6 compiles in, through NVRTC 12.9
from NVIDIA's wheel with libgpuarray's options (`-arch compute_XY`); then ptxas
from the nvcc wheel. Downloads (about 130 MB) are kept in the test cache.
"""

from __future__ import annotations

import sys

import pytest
from conftest import CACHE, ROOT

sys.path.insert(0, str(ROOT / "tools"))

import scatter_kernel_compile as tool  # noqa: E402

from theano_det.ops import scatter_kernel as sk  # noqa: E402

ARCHS = ["60", "70", "80", "90"]


@pytest.fixture(scope="module")
def toolchain():
    return {"header": tool.cluda_header(CACHE), "nvrtc": tool.Nvrtc(tool.nvrtc_library(CACHE)),
            "ptxas": tool.ptxas_program(CACHE)}


def test_the_header_is_libgpuarrays_cuda_cluda(toolchain):
    header = toolchain["header"]
    for definition in ("#define KERNEL extern \"C\" __global__", "#define GLOBAL_MEM /* empty */",
                       "#define LOCAL_MEM __shared__", "#define ga_ulong unsigned long long",
                       "static __device__ inline float ga_half2float(ga_half h)"):
        assert definition in header
    assert "__kernel" not in header  # not the OpenCL one


@pytest.mark.parametrize("dtype", sk.DTYPES)
def test_every_dtype_compiles_for_every_architecture(toolchain, dtype):
    source = sk.kernel_source(dtype, "int64")
    for arch in ARCHS:
        ptx, log = toolchain["nvrtc"].compile(source, toolchain["header"], arch)
        assert ptx is not None, f"sm_{arch}: {log}"
        assert sorted(tool.re.findall(r"\.entry (\w+)\(", ptx)) == sorted(sk.KERNEL_NAMES)
        assert "error" not in log


@pytest.mark.parametrize("index_dtype", sk.INDEX_DTYPES)
def test_every_index_dtype_compiles(toolchain, index_dtype):
    ptx, log = toolchain["nvrtc"].compile(sk.kernel_source("float32", index_dtype), toolchain["header"], "90")
    assert ptx is not None, log


@pytest.mark.parametrize("arch", ARCHS)
def test_ptxas_assembles_without_spilling(toolchain, arch):
    ptx, log = toolchain["nvrtc"].compile(sk.kernel_source("float32", "int64"), toolchain["header"], arch)
    assembled = tool.assemble(toolchain["ptxas"], ptx, arch)
    assert assembled["ok"], assembled["log"]
    assert set(assembled["kernels"]) == set(sk.KERNEL_NAMES)
    for name, used in assembled["kernels"].items():
        assert used["registers"] <= 64, (name, used)
        assert used["spill_stores"] == used["spill_loads"] == 0, (name, used)
        assert used["shared"] <= 48 * 1024, (name, used)  # static shared memory, within every sm_60+ block
    assert assembled["kernels"]["td_rank"]["shared"] >= 4 * sk.RANK_THREADS * sk.RANK_SPLIT  # its lanes' tiles
    assert assembled["kernels"]["td_rank"]["registers"] * sk.RANK_THREADS * sk.RANK_SPLIT <= 65536  # its block fits


def test_nvrtc_reports_an_error_in_a_broken_source(toolchain):
    # the check can fail: the same call rejects a source with a type error
    broken = sk.kernel_source("float32", "int64").replace("td_value acc = *target;", "td_value acc = target;")
    ptx, log = toolchain["nvrtc"].compile(broken, toolchain["header"], "90")
    assert ptx is None and "error" in log
