"""The rewrite's matching (pure, on real Theano graphs) and its registration in Theano's optdb."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from incsubtensor_cases import theano_names

from theano_det.ops import incsubtensor_rewrite as rewrite

OPS_DIR = Path(rewrite.__file__).parent
theano = T = AdvancedIncSubtensor1 = DetAdvancedIncSubtensor1 = CPU = None  # set by the fixture below


@pytest.fixture(autouse=True)
def imported_theano(isolated_home):
    globals().update(theano_names())
    globals()["CPU"] = (AdvancedIncSubtensor1,)


def stock_node(set_instead_of_inc=False, inplace=False, dtype="float32"):
    x, y, idx = T.matrix(dtype=dtype), T.matrix(dtype=dtype), T.lvector()
    return AdvancedIncSubtensor1(inplace=inplace, set_instead_of_inc=set_instead_of_inc)(x, y, idx).owner


def test_decides_on_the_nodes_theanos_helpers_build():
    x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()
    inc = T.inc_subtensor(x[idx], y).owner
    put = T.set_subtensor(x[idx], y).owner
    assert rewrite.decide(inc, CPU) == rewrite.Decision("AdvancedIncSubtensor1", False, False, False)
    assert rewrite.decide(put, CPU) == rewrite.Decision("AdvancedIncSubtensor1", True, False, False)
    assert rewrite.decide(x[idx].owner, CPU) is None  # AdvancedSubtensor1: not ours


def test_decision_keeps_inplace_and_set():
    decision = rewrite.decide(stock_node(set_instead_of_inc=True, inplace=True), CPU)
    assert decision.inplace and decision.set_instead_of_inc


def test_leaves_dtypes_the_kernel_does_not_handle():
    assert rewrite.decide(stock_node(dtype="complex64"), CPU) is None
    assert rewrite.decide(stock_node(dtype="uint16"), CPU) is not None


def test_matches_the_exact_stock_class_only():
    class Subclass(AdvancedIncSubtensor1):
        pass

    x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()
    assert rewrite.decide(Subclass()(x, y, idx).owner, CPU) is None
    assert rewrite.decide(DetAdvancedIncSubtensor1()(x, y, idx).owner, CPU) is None


def test_the_gpu_classes_are_theanos_and_decide_on_their_nodes():
    from theano.gof import Apply
    from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20

    classes = rewrite.gpu_stock_classes()
    assert classes == (GpuAdvancedIncSubtensor1, GpuAdvancedIncSubtensor1_dev20)
    # Real GPU op instances; the variables are CPU ones because no GPU context exists
    # here (make_node needs one). decide() reads only the op and the input types.
    x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()
    dev20 = Apply(GpuAdvancedIncSubtensor1_dev20(set_instead_of_inc=True), [x, y, idx], [x.type()])
    plain = Apply(GpuAdvancedIncSubtensor1(inplace=True), [x, y, idx], [x.type()])
    assert rewrite.decide(dev20, classes) == rewrite.Decision(
        "GpuAdvancedIncSubtensor1_dev20", True, False, True)
    assert rewrite.decide(plain, classes) == rewrite.Decision(
        "GpuAdvancedIncSubtensor1", False, True, False)
    assert rewrite.decide(stock_node(), classes) is None


def test_what_replaces_what():
    atomic = rewrite.Decision("GpuAdvancedIncSubtensor1_dev20", False, False, True)
    host_loop = rewrite.Decision("GpuAdvancedIncSubtensor1", True, True, False)
    # until the kernel has passed on a GPU, _dev20 becomes the stock deterministic op
    assert rewrite.gpu_kernel_ready() is False
    assert rewrite.replacement_for(atomic) == "GpuAdvancedIncSubtensor1"
    assert rewrite.replacement_for(host_loop) is None
    # once it is: both become the new op
    assert rewrite.replacement_for(atomic, kernel_ready=True) == rewrite.NEW_GPU_OP
    assert rewrite.replacement_for(host_loop, kernel_ready=True) == rewrite.NEW_GPU_OP


def test_the_local_rewrite_replaces_nodes_in_a_real_graph_and_keeps_their_parameters():
    from theano.gof import FunctionGraph, TopoOptimizer

    x, y, idx = T.fmatrix(), T.dmatrix(), T.lvector()
    doubled = x * 2  # an intermediate: an inplace op may destroy it
    outputs = [T.inc_subtensor(x[idx], y), T.set_subtensor(x[idx], y),
               AdvancedIncSubtensor1(inplace=True)(doubled, y, idx)]
    fgraph = FunctionGraph([x, y, idx], outputs)
    TopoOptimizer(rewrite.cpu_local_rewrite()).optimize(fgraph)
    ops = [node.op for node in fgraph.toposort() if "IncSubtensor" in type(node.op).__name__]
    assert sorted(map(str, ops)) == ["DetAdvancedIncSubtensor1{inplace,inc}",
                                     "DetAdvancedIncSubtensor1{no_inplace,inc}",
                                     "DetAdvancedIncSubtensor1{no_inplace,set}"]
    assert all(out.type == original.type for out, original in zip(fgraph.outputs, outputs))


def run_python(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_registered_in_optdb_it_runs_inside_theano_function():
    # A fresh process: the CPU variant of the rewrite goes into the global optdb.
    report = run_python("""
        import json, numpy as np, theano, theano.tensor as T
        from theano_det.ops import incsubtensor_rewrite as rewrite
        first = rewrite.register_local_rewrite(rewrite.cpu_local_rewrite(), "cpu_variant")
        again = rewrite.register_local_rewrite(rewrite.cpu_local_rewrite(), "cpu_variant")
        rewrite.register_inplace_rewrite()
        x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()
        out = T.inc_subtensor(x[idx], y)
        f = theano.function([theano.In(x, mutable=True), y, idx], out)
        excluded = theano.function([x, y, idx], out,
                                   mode=theano.compile.get_default_mode().excluding("theano_det"))
        xv = np.arange(8, dtype="float32").reshape(4, 2)
        yv = np.ones((5, 2), dtype="float32")
        iv = np.array([3, 0, 3, -1, 1])
        expected = xv.copy(); np.add.at(expected, iv, yv)
        print(json.dumps({
            "registered": [first, again],
            "position": theano.compile.optdb.__position__["cpu_variant"],
            "ops": [str(n.op) for n in f.maker.fgraph.toposort()],
            "excluded_ops": [str(n.op) for n in excluded.maker.fgraph.toposort()],
            "correct": bool((excluded(xv, yv, iv) == expected).all() and (f(xv, yv, iv) == expected).all()),
            "destroyed_input": bool((xv == expected).all()),
        }))
    """)
    assert report["registered"] == [True, False]
    assert report["position"] == rewrite.POSITION
    assert report["ops"] == ["DetAdvancedIncSubtensor1{inplace,inc}"]
    assert report["excluded_ops"] == ["AdvancedIncSubtensor1{no_inplace,inc}"]
    assert report["correct"] and report["destroyed_input"]


def test_install_registers_the_gpu_rewrite_once_and_leaves_cpu_graphs_alone():
    report = run_python("""
        import json, theano, theano.tensor as T
        from theano.compile import optdb
        from theano.gof.optdb import Query
        import theano_det.ops
        first = theano_det.ops.install()
        second = theano_det.ops.install()
        name = first["incsubtensor"]["name"]
        x, y, idx = T.fmatrix(), T.fmatrix(), T.lvector()
        f = theano.function([x, y, idx], T.inc_subtensor(x[idx], y))
        print(json.dumps({
            "first": first, "same_again": first == second,
            "position": optdb.__position__[name],
            "in_fast_run": name in [getattr(o, "name", None) for o in optdb.query(Query(include=["fast_run"]))],
            "excludable": name not in [getattr(o, "name", None) for o in
                                       optdb.query(Query(include=["fast_run"], exclude=["theano_det"]))],
            "cpu_ops": [str(n.op) for n in f.maker.fgraph.toposort()],
        }))
    """)
    installed = report["first"]["incsubtensor"]
    assert installed == {
        "installed": True,
        "name": rewrite.REWRITE_NAME,
        "position": rewrite.POSITION,
        "replaces": ["GpuAdvancedIncSubtensor1", "GpuAdvancedIncSubtensor1_dev20"],
        "replacement": "GpuAdvancedIncSubtensor1",
        "kernel_ready": False,
    }
    assert report["same_again"] and report["position"] == rewrite.POSITION
    assert report["in_fast_run"] and report["excludable"]
    assert report["cpu_ops"] == ["AdvancedIncSubtensor1{no_inplace,inc}"]


def test_the_package_imports_without_numpy_or_theano():
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['theano'] = None\n"
            "import theano_det.ops; print(theano_det.ops.install.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "install"


@pytest.mark.parametrize("path", sorted(OPS_DIR.glob("*.py")), ids=lambda path: path.name)
def test_runs_in_old_target_interpreters(path):
    # Loaded into the user's Theano process, which may be Python 3.5
    source = path.read_text()
    ast.parse(source, feature_version=(3, 5))  # no f-strings, annotations, walrus...
    assert "from __future__ import annotations" not in source
    imported = {node.module or "" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("theano_det") for name in imported)  # relative imports only


def test_replaced_nodes_compute_what_the_stock_op_computes():
    from theano.gof import FunctionGraph, TopoOptimizer

    fgraph_inputs = [T.fmatrix(), T.fmatrix(), T.lvector()]
    x, y, idx = fgraph_inputs
    outputs = [T.inc_subtensor(x[idx], y), T.set_subtensor(x[idx], y)]
    stock = theano.function(fgraph_inputs, outputs)
    fgraph = FunctionGraph(fgraph_inputs, outputs)
    TopoOptimizer(rewrite.cpu_local_rewrite()).optimize(fgraph)
    ours = theano.function(fgraph.inputs, fgraph.outputs)
    assert DetAdvancedIncSubtensor1 in [type(node.op) for node in ours.maker.fgraph.toposort()]
    rng = np.random.RandomState(20)
    args = (rng.standard_normal((6, 4)).astype("float32"), rng.standard_normal((30, 4)).astype("float32"),
            rng.randint(-6, 6, size=30))
    for a, b in zip(stock(*args), ours(*args)):
        assert a.tobytes() == b.tobytes()
