"""GpuDetAdvancedIncSubtensor1's C code, as Theano assembles it, compiles against libgpuarray and pygpu.

Theano 1.0.5 itself writes the op's translation unit (tools/scatter_op_sources.py,
with a stand-in GPU context: code generation never touches the device) for
several variants, and g++ checks each with the arguments Theano would use and
the headers of Debian's libgpuarray and pygpu 0.7.6, the ones the GPU machine
runs. So the launch wrappers GpuKernelBase generates from the kernels' argument
lists, scatter_launch.py's C and the op's glue (allocation, read-back, errors)
agree in types and names before a GPU compiles them. What the C does is
checked by test_scatter_launch.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import CACHE, ROOT

sys.path.insert(0, str(ROOT / "tools"))

import cudnn_syntax_check as tool  # noqa: E402
import scatter_op_sources  # noqa: E402

from theano_det.ops import scatter_kernel as sk  # noqa: E402


@pytest.fixture(scope="module")
def generated(release, tmp_path_factory):
    cache = CACHE / "cudnn-syntax"  # Debian's packages and mako, shared with test_cudnn_compat
    debian, site = tool.debian_packages(cache), tool.mako_site(cache)
    work = tmp_path_factory.mktemp("scatter-op")
    index = tool.theano_sources(Path(release("1.0.5")), work, ROOT / "tools" / "scatter_op_sources.py", [], [],
                                debian, site, cache)
    return index, debian


def test_theano_writes_every_variant(generated):
    index, _ = generated
    assert index["refused"] == []
    assert [op["name"] for op in index["ops"]] == [scatter_op_sources.variant_name(*variant)
                                                  for variant in scatter_op_sources.VARIANTS]
    source = Path(index["ops"][0]["source"]).read_text()
    for name in sk.KERNEL_NAMES:  # GpuKernelBase's kernel object, launch wrapper and init, and our launch
        assert "GpuKernel k_%s;" % name in source and "int %s_call(" % name in source
        assert '"%s"' % name in source and "err = %s_call(1, &gs, &ls, 0," % name in source
    assert "td_scatter_run(ctx->ctx, &p, TD_RANK_MAX, &bad)" in source
    radix = Path(index["ops"][-1]["source"]).read_text()  # the benchmark's op with the radix sort forced
    assert index["ops"][-1]["name"].endswith("_rank_max_0") and "td_scatter_run(ctx->ctx, &p, 0, &bad)" in radix
    for op, variant in zip(index["ops"], scatter_op_sources.VARIANTS):  # out is x only for the inplace op
        inplace = variant[4]
        assert "if (%d) {\n  Py_XDECREF(" % inplace in Path(op["source"]).read_text()


@pytest.mark.parametrize("variant", [scatter_op_sources.variant_name(*v) for v in scatter_op_sources.VARIANTS])
def test_the_op_compiles(generated, variant):
    index, debian = generated
    (op,) = [op for op in index["ops"] if op["name"] == variant]
    result = tool.syntax_check(op, [f"-I{debian / 'usr' / 'include'}"])
    assert result["ok"], "\n".join(result["errors"])


def test_the_device_compiles_the_kernel_source_the_nvrtc_tests_compile(generated):
    # GpuKernelBase embeds each kernel's source as a C string; unescaped, it is scatter_kernel's
    index, _ = generated
    for op, variant in zip(index["ops"], scatter_op_sources.VARIANTS):
        source = Path(op["source"]).read_text()
        for name in sk.KERNEL_NAMES:
            found = re.search(r'static const char \*kcode_%s_unsigned = "(.*?)";\n' % name, source, re.S)
            assert found, name
            embedded = found.group(1).replace('\\n', "\n").replace('\\"', '"')
            assert embedded == sk.kernel_source(variant[1], variant[2]), (op["name"], name)


def test_the_check_can_fail(generated, tmp_path):
    # the same unit with a launch wrapper called with one argument too few does not compile
    index, debian = generated
    op = dict(index["ops"][0])
    source = Path(op["source"]).read_text()
    broken = tmp_path / "broken.cpp"
    broken.write_text(source.replace("counts, n_counts, tile_bad, n_tiles, first_bad)", "counts, n_counts, tile_bad, n_tiles)"))
    assert broken.read_text() != source
    op["source"] = str(broken)
    result = tool.syntax_check(op, [f"-I{debian / 'usr' / 'include'}"])
    assert not result["ok"] and any("td_scan_call" in line for line in result["errors"])
