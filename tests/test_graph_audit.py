"""The audit on graphs made of real Theano 1.0.5 op classes.

The GPU op classes import without pygpu and can be put in a graph with CPU-typed
variables (they are never compiled here), so every gpuarray rule is checked on the
real class, with the attributes Theano gives it. Graphs compiled on a GPU are
tested in test_graph_audit_gpu.py (marked gpu).
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

import theano_det
from theano_det.verification.auditor import Finding, NondeterministicOpError
from theano_det.intarget import graph_audit

HERE = __file__
GPU_MODULES = ("blocksparse", "dnn", "sort", "subtensor")


@pytest.fixture
def th():
    """Theano and its gpuarray modules, imported once the autouse fixture has set
    THEANO_FLAGS (Theano reads them when it is first imported)."""
    theano = importlib.import_module("theano")
    modules = {name: importlib.import_module(f"theano.gpuarray.{name}") for name in GPU_MODULES}
    return SimpleNamespace(theano=theano, T=theano.tensor, **modules)


def graph_of(th, op, *inputs):
    """A FunctionGraph holding one node of `op` (not type-checked, never compiled)."""
    node = th.theano.gof.Apply(op, list(inputs), [inputs[0].type()])
    return th.theano.gof.FunctionGraph(th.theano.gof.graph.inputs(node.outputs), node.outputs, clone=False)


def tensor(th, ndim, dtype="float32"):
    return th.T.TensorType(dtype, (False,) * ndim)()


def conv_graph(th, op_class, algo, ndim=4):
    return graph_of(th, op_class(algo=algo), tensor(th, ndim), tensor(th, ndim), tensor(th, ndim))


def rules_found(graph):
    return [finding.rule for finding in theano_det.audit(graph)]


def dev20_graph(th):
    T = th.T
    return graph_of(th, th.subtensor.GpuAdvancedIncSubtensor1_dev20(), T.matrix(), T.matrix(), T.lvector())


def test_dev20_is_found_with_the_line_that_created_it(th):
    (finding,) = theano_det.audit(dev20_graph(th))
    assert finding.rule == "dev20-atomic-inc-subtensor"
    assert finding.op_class == "GpuAdvancedIncSubtensor1_dev20"
    assert finding.certainty == "certain" and finding.fixed_by_patch
    assert finding.line.startswith(HERE + ":")
    assert "Theano 1.0.5" in finding.versions and "Theano-PyMC 1.1.2" in finding.versions
    assert "theano-det patch" in str(finding)


def test_the_deterministic_inc_subtensor_is_not_flagged(th):
    T = th.T
    graph = graph_of(th, th.subtensor.GpuAdvancedIncSubtensor1(), T.matrix(), T.matrix(), T.lvector())
    assert theano_det.audit(graph) == []


@pytest.mark.parametrize("algo, expected", [
    ("none", ["cudnn-conv-bwd-filter-algo"]),
    ("small", ["cudnn-conv-bwd-filter-algo"]),
    ("guess_once", ["cudnn-conv-runtime-algo-choice"]),
    ("time_on_shape_change", ["cudnn-conv-runtime-algo-choice"]),
    ("fft", ["cudnn-conv-fft-fallback"]),
    ("deterministic", []),
])
def test_cudnn_weight_gradient_algorithms(th, algo, expected):
    assert rules_found(conv_graph(th, th.dnn.GpuDnnConvGradW, algo)) == expected


@pytest.mark.parametrize("algo, expected", [
    ("none", ["cudnn-conv-bwd-data-algo"]),
    ("guess_on_shape_change", ["cudnn-conv-runtime-algo-choice"]),
    ("fft_tiling", ["cudnn-conv-fft-fallback"]),
    ("deterministic", []),
    ("winograd", []),
])
def test_cudnn_input_gradient_algorithms(th, algo, expected):
    assert rules_found(conv_graph(th, th.dnn.GpuDnnConvGradI, algo)) == expected


@pytest.mark.parametrize("algo", ["deterministic", "none", "small"])
def test_every_3d_cudnn_weight_gradient_is_flagged_as_not_fixable_by_flags(th, algo):
    (finding,) = theano_det.audit(conv_graph(th, th.dnn.GpuDnnConvGradW, algo, ndim=5))
    assert finding.rule == "cudnn-conv3d-bwd-filter"
    assert not finding.fixed_by_patch
    assert finding.fix.startswith("Not fixable by flags")


def test_3d_cudnn_input_gradient_follows_its_algorithm(th):
    assert rules_found(conv_graph(th, th.dnn.GpuDnnConvGradI, "deterministic", ndim=5)) == []
    assert rules_found(conv_graph(th, th.dnn.GpuDnnConvGradI, "none", ndim=5)) == ["cudnn-conv-bwd-data-algo"]


@pytest.mark.parametrize("mode, expected", [
    ("max", ["cudnn-max-pool-grad"]),
    ("max_deterministic", []),
    ("average_inc_pad", []),
])
def test_cudnn_pooling_gradient(th, mode, expected):
    four = [tensor(th, 4) for _ in range(3)]
    assert rules_found(graph_of(th, th.dnn.GpuDnnPoolGrad(mode=mode), *four, th.T.lvector())) == expected


def test_block_sparse_and_topk(th):
    T = th.T
    gemv = graph_of(th, th.blocksparse.GpuSparseBlockGemv(), tensor(th, 3), tensor(th, 4), tensor(th, 3),
                    T.lmatrix(), T.lmatrix())
    outer = graph_of(th, th.blocksparse.GpuSparseBlockOuter(), tensor(th, 4), tensor(th, 3), tensor(th, 3),
                     T.lmatrix(), T.lmatrix())
    assert rules_found(gemv) == rules_found(outer) == ["gpu-sparse-block-atomics"]
    (finding,) = theano_det.audit(graph_of(th, th.sort.GpuTopKOp(sorted=False), tensor(th, 1), T.lscalar()))
    assert (finding.rule, finding.certainty) == ("gpu-topk-ties", "possible")


def test_theano_0_7_keeps_settings_on_the_descriptor_op(th):
    """Theano 0.7's GpuDnnPoolGrad has no `mode`: it reads it from the GpuDnnPoolDesc
    node feeding it, and its GpuDnnConvGradW has no algorithm at all (both checked
    against the 0.7.0 sources in test_rules_catalogue). The old backend cannot be
    imported on this Python, so the classes are stand-ins with their names, module
    and attributes."""
    Op, T, module = th.theano.Op, th.T, "theano.sandbox.cuda.dnn"
    pool_grad = type("GpuDnnPoolGrad", (Op,), {"__module__": module, "__props__": ()})
    conv_grad_w = type("GpuDnnConvGradW", (Op,), {"__module__": module, "__props__": ("inplace",),
                                                  "inplace": False})

    def pool_desc(mode):
        desc_class = type("GpuDnnPoolDesc", (Op,), {"__module__": module, "__props__": ("mode",), "mode": mode})
        return th.theano.gof.Apply(desc_class(), [], [T.lscalar()]).outputs[0]

    def three():
        return [tensor(th, 4) for _ in range(3)]

    assert rules_found(graph_of(th, pool_grad(), *three(), pool_desc("max"))) == ["cudnn-max-pool-grad"]
    assert rules_found(graph_of(th, pool_grad(), *three(), pool_desc("average"))) == []
    assert rules_found(graph_of(th, conv_grad_w(), *three())) == ["cudnn-conv-bwd-filter-algo"]


def test_a_class_of_the_same_name_elsewhere_is_not_matched(th):
    T = th.T
    lookalike = type("GpuAdvancedIncSubtensor1_dev20", (th.theano.Op,), {"__module__": "mypackage.ops",
                                                                         "__props__": ()})
    assert theano_det.audit(graph_of(th, lookalike(), T.matrix(), T.matrix(), T.lvector())) == []


def test_inner_graphs_are_audited(th):
    theano, T = th.theano, th.T
    x, y, indices = T.matrix("x"), T.matrix("y"), T.lvector("indices")
    inner = theano.gof.Apply(th.subtensor.GpuAdvancedIncSubtensor1_dev20(), [x, y, indices], [x.type()])
    op_from_graph = theano.OpFromGraph([x, y, indices], inner.outputs)
    a, b, c = T.matrix(), T.matrix(), T.lvector()
    graph = theano.gof.FunctionGraph([a, b, c], [op_from_graph(a, b, c)])
    (finding,) = theano_det.audit(graph)
    assert finding.inside == ("OpFromGraph",)
    assert "GpuAdvancedIncSubtensor1_dev20" in graph_audit.op_names(graph.toposort())


def test_a_scan_body_is_audited(th):
    """A rule for a CPU op (data, as in the rules file) finds it inside a real Scan."""
    theano, T = th.theano, th.T
    cpu_rule = dict(graph_audit.load_rules()[0], ops=[
        {"class": "AdvancedIncSubtensor1", "file": "tensor/subtensor.py", "releases": ["1.0.5"]}])
    x, y, indices = T.matrix("x"), T.matrix("y"), T.lvector("indices")
    out, _ = theano.scan(lambda acc: T.inc_subtensor(acc[indices], y), outputs_info=[x], n_steps=3)
    graph = theano.gof.FunctionGraph([x, y, indices], [out])
    (finding,) = graph_audit.audit(graph, [cpu_rule])
    assert finding["inside"] == ["Scan"]
    assert finding["line"].startswith(HERE + ":")


def test_a_compiled_cpu_embedding_gradient_is_clean(th):
    theano, T = th.theano, th.T
    table, indices = T.matrix("table"), T.lvector("indices")
    function = theano.function([table, indices], theano.grad(table[indices].sum(), table))
    assert "AdvancedIncSubtensor1" in graph_audit.op_names(graph_audit.graph_nodes(function))
    assert theano_det.audit(function, strict=True) == []


def test_strict_audit_raises_with_every_finding(th):
    theano, T = th.theano, th.T
    x, y, indices = T.matrix(), T.matrix(), T.lvector()
    dev20 = theano.gof.Apply(th.subtensor.GpuAdvancedIncSubtensor1_dev20(), [x, y, indices], [x.type()])
    pool = theano.gof.Apply(th.dnn.GpuDnnPoolGrad(mode="max"), [dev20.outputs[0], x, x, T.lvector()],
                            [x.type()])
    graph = theano.gof.FunctionGraph(theano.gof.graph.inputs(pool.outputs), pool.outputs, clone=False)
    with pytest.raises(NondeterministicOpError) as raised:
        theano_det.audit(graph, strict=True)
    assert [finding.rule for finding in raised.value.findings] == [
        "dev20-atomic-inc-subtensor", "cudnn-max-pool-grad"]
    message = str(raised.value)
    assert message.startswith("2 node(s)") and "GpuDnnPoolGrad" in message and "_dev20" in message


def test_audit_refuses_what_is_not_a_graph():
    with pytest.raises(TypeError, match="theano.function or a FunctionGraph"):
        theano_det.audit([1, 2])


def test_findings_round_trip_through_json(th):
    (found,) = graph_audit.audit(dev20_graph(th))
    assert Finding.from_dict(found).to_json() == dict(found)


def test_cudnn_algorithms_are_reported(th):
    graph = conv_graph(th, th.dnn.GpuDnnConvGradW, "deterministic", ndim=5)
    assert graph_audit.cudnn_algorithms(graph.toposort()) == [
        {"op": "GpuDnnConvGradW", "algo": "deterministic", "ndim": 5}]


class KerasStyleFunction:
    """What Keras 1 and 2's theano_backend.Function keeps: the compiled function at `.function`."""

    def __init__(self, theano, inputs, outputs):
        self.function = theano.function(inputs, outputs)

    def __call__(self, *values):
        return self.function(*values)


def embedding_gradient(th):
    table, indices = th.T.matrix("table"), th.T.lvector("indices")
    return [table, indices], th.theano.grad(table[indices].sum(), table)


def test_an_object_that_wraps_a_compiled_function_is_audited_as_the_function(th):
    inputs, output = embedding_gradient(th)
    wrapper = KerasStyleFunction(th.theano, inputs, output)
    assert graph_audit.op_names(graph_audit.graph_nodes(wrapper)) == graph_audit.op_names(
        graph_audit.graph_nodes(wrapper.function))
    assert theano_det.audit(wrapper, strict=True) == []
    holder = SimpleNamespace(function=wrapper)  # Keras 1: model.model.train_function, one level more
    assert graph_audit.graph_nodes(holder) == graph_audit.graph_nodes(wrapper.function)


def test_an_object_that_wraps_no_compiled_function_is_a_clear_type_error(th):
    with pytest.raises(TypeError, match=r"or an object that keeps one at \.function .*got str \(at "
                                        r"SimpleNamespace\.function\)"):
        theano_det.audit(SimpleNamespace(function="not compiled"))
    with pytest.raises(TypeError, match=r"got int$"):
        theano_det.audit(3)
    with pytest.raises(TypeError, match=r"got None \(Keras makes model\.train_function"):
        theano_det.audit(None)
