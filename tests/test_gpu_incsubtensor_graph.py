"""The rewrite builds GpuDetAdvancedIncSubtensor1 nodes in real Theano GPU graphs, without a GPU.

Theano's GPU types need only a registered context to build graphs (nothing runs):
a stand-in context is registered, with the few pygpu names GpuArrayType asks for,
and the rewrite is run with its gate open on nodes of Theano's own GPU ops.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from incsubtensor_cases import theano_names

from theano_det.ops import incsubtensor_rewrite as rewrite

theano = T = None  # set by the fixture


class FakeContext:
    devname = "no GPU (graph building only)"


@pytest.fixture
def gpu_graphs(isolated_home, monkeypatch):
    globals().update(theano_names())
    import theano.gpuarray.type as gpu_type

    codes = {name: code for code, name in enumerate(
        ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
         "float16", "float32", "float64"])}
    fake = types.SimpleNamespace(GpuContext=FakeContext, GpuArrayException=RuntimeError,
                                 dtype_to_typecode=lambda dtype: codes[np.dtype(dtype).name])
    monkeypatch.setattr(gpu_type, "gpuarray", fake, raising=False)
    monkeypatch.setitem(gpu_type._context_reg, None, FakeContext())
    from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20

    from theano_det.ops.gpu_incsubtensor import GpuDetAdvancedIncSubtensor1

    return types.SimpleNamespace(
        GpuArrayType=gpu_type.GpuArrayType, dev20=GpuAdvancedIncSubtensor1_dev20, stock=GpuAdvancedIncSubtensor1,
        ours=GpuDetAdvancedIncSubtensor1, classes=rewrite.gpu_stock_classes())


def gpu_variable(gpu_graphs, dtype, ndim):
    return gpu_graphs.GpuArrayType(dtype, (False,) * ndim, context_name=None)()


def rewritten(gpu_graphs, node, ready=True):
    local = rewrite.make_local_rewrite(gpu_graphs.classes, rewrite._build_gpu,
                                       lambda decision: rewrite.replacement_for(decision, kernel_ready=ready))
    return local.transform(node)


@pytest.mark.parametrize("set_instead_of_inc", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_an_open_gate_replaces_dev20_with_the_kernel_keeping_its_parameters(gpu_graphs, set_instead_of_inc, inplace):
    x, y, idx = gpu_variable(gpu_graphs, "float32", 2), gpu_variable(gpu_graphs, "float32", 2), T.lvector()
    node = gpu_graphs.dev20(inplace=inplace, set_instead_of_inc=set_instead_of_inc)(x, y, idx).owner
    (out,) = rewritten(gpu_graphs, node)
    op = out.owner.op
    assert type(op) is gpu_graphs.ours
    assert (op.inplace, op.set_instead_of_inc) == (inplace, set_instead_of_inc)
    assert getattr(op, "destroy_map", {}) == ({0: [0]} if inplace else {})
    assert out.owner.inputs[:2] == [x, y] and out.owner.inputs[2] is node.inputs[2]  # the index stays on the GPU
    assert out.type == node.outputs[0].type


def test_an_open_gate_replaces_the_host_looped_op_too(gpu_graphs):
    x, y, idx = gpu_variable(gpu_graphs, "int16", 1), gpu_variable(gpu_graphs, "int16", 0), T.ivector()
    node = gpu_graphs.stock()(x, y, idx).owner
    (out,) = rewritten(gpu_graphs, node)
    assert type(out.owner.op) is gpu_graphs.ours
    assert out.owner.inputs[2].type.dtype == "int32"


def test_a_closed_gate_keeps_the_stock_deterministic_op(gpu_graphs):
    x, y, idx = gpu_variable(gpu_graphs, "float32", 2), gpu_variable(gpu_graphs, "float32", 2), T.lvector()
    (out,) = rewritten(gpu_graphs, gpu_graphs.dev20()(x, y, idx).owner, ready=False)
    assert type(out.owner.op) is gpu_graphs.stock
    assert rewritten(gpu_graphs, gpu_graphs.stock()(x, y, idx).owner, ready=False) is False


def test_x_of_three_dimensions_keeps_theanos_ops(gpu_graphs):
    x, y, idx = gpu_variable(gpu_graphs, "float32", 3), gpu_variable(gpu_graphs, "float32", 3), T.lvector()
    (out,) = rewritten(gpu_graphs, gpu_graphs.dev20()(x, y, idx).owner)
    assert type(out.owner.op) is gpu_graphs.stock
    assert rewritten(gpu_graphs, gpu_graphs.stock()(x, y, idx).owner) is False


def test_make_node_casts_y_to_x_dtype_and_checks_like_dev20(gpu_graphs):
    x, idx = gpu_variable(gpu_graphs, "float32", 2), T.lvector()
    out = gpu_graphs.ours()(x, gpu_variable(gpu_graphs, "float64", 2), idx)
    assert out.owner.inputs[1].type.dtype == "float32"
    assert out.owner.inputs[2].type.dtype == "int64" and isinstance(out.owner.inputs[2].type, gpu_graphs.GpuArrayType)
    with pytest.raises(TypeError, match="index must be integers"):
        gpu_graphs.ours()(x, x, T.fvector())
    with pytest.raises(TypeError, match="index must be vector"):
        gpu_graphs.ours()(x, x, T.lmatrix())
    with pytest.raises(TypeError, match="cannot set x subtensor with ndim=1 by y with ndim=2"):
        gpu_graphs.ours(set_instead_of_inc=True)(gpu_variable(gpu_graphs, "float32", 1), x, idx)
    with pytest.raises(TypeError, match="has no complex64 version|handles x of 1 or 2"):
        gpu_graphs.ours()(gpu_variable(gpu_graphs, "float32", 3), gpu_variable(gpu_graphs, "float32", 3), idx)


def test_the_inplace_rewrite_makes_an_inplace_clone(gpu_graphs):
    from theano_det.ops.gpu_incsubtensor import local_gpu_det_incsubtensor1_inplace_function

    x, y, idx = gpu_variable(gpu_graphs, "float32", 2), gpu_variable(gpu_graphs, "float32", 2), T.lvector()
    node = gpu_graphs.ours(set_instead_of_inc=True)(x, y, idx).owner
    (out,) = local_gpu_det_incsubtensor1_inplace_function().transform(node)
    assert out.owner.op == gpu_graphs.ours(inplace=True, set_instead_of_inc=True)
