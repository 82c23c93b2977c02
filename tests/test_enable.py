"""`theano_det.enable()`: every function Theano compiles is audited."""

from __future__ import annotations

import importlib
import warnings

import pytest

import theano_det
from theano_det.verification import auditor
from theano_det.intarget import graph_audit


@pytest.fixture
def theano():
    """Imported once the autouse fixture has set THEANO_FLAGS (read on first import)."""
    module = importlib.import_module("theano")
    yield module
    theano_det.disable()


@pytest.fixture
def cpu_rule(monkeypatch):
    """The rules file's _dev20 rule, aimed at the CPU's AdvancedIncSubtensor1, so that a
    function that really compiles and runs here has a finding."""
    rule = dict(graph_audit.load_rules()[0], ops=[
        {"class": "AdvancedIncSubtensor1", "file": "tensor/subtensor.py", "releases": ["1.0.5"]}])
    monkeypatch.setattr(auditor, "rules", lambda: (rule,))
    return rule


def embedding_gradient(theano):
    T = theano.tensor
    table, indices = T.matrix("table"), T.lvector("indices")
    return [table, indices], theano.grad(table[indices].sum(), table)


def test_warn_names_the_finding_and_the_users_line(theano, cpu_rule):
    inputs, gradient = embedding_gradient(theano)
    theano_det.enable("warn")
    with pytest.warns(auditor.NondeterminismWarning) as caught:
        function = theano.function(inputs, gradient)
    (warning,) = [w for w in caught if issubclass(w.category, auditor.NondeterminismWarning)]
    assert "AdvancedIncSubtensor1" in str(warning.message)
    assert warning.filename == __file__  # the theano.function call above, not Theano's internals
    import numpy
    assert function(numpy.ones((3, 2)), [0, 0, 2]).tolist() == [[2, 2], [0, 0], [1, 1]]


def test_strict_makes_theano_function_raise(theano, cpu_rule):
    inputs, gradient = embedding_gradient(theano)
    theano_det.enable("strict")
    with pytest.raises(theano_det.NondeterministicOpError) as raised:
        theano.function(inputs, gradient)
    assert [finding.rule for finding in raised.value.findings] == [cpu_rule["id"]]


def test_strict_with_the_real_rules_stops_a_dev20_graph_before_it_is_linked(theano):
    """A real GpuAdvancedIncSubtensor1_dev20 node: the audit runs before linking, so the
    error is ours, not a failure to compile the GPU op on this CPU machine."""
    from theano.gpuarray.subtensor import GpuAdvancedIncSubtensor1_dev20
    T = theano.tensor
    x, y, indices = T.matrix(), T.matrix(), T.lvector()
    node = theano.gof.Apply(GpuAdvancedIncSubtensor1_dev20(), [x, y, indices], [x.type()])
    theano_det.enable("strict")
    with pytest.raises(theano_det.NondeterministicOpError, match="GpuAdvancedIncSubtensor1_dev20"):
        theano.function([x, y, indices], node.outputs[0], mode=theano.compile.mode.Mode(optimizer=None))


def test_disable_stops_auditing(theano, cpu_rule):
    inputs, gradient = embedding_gradient(theano)
    theano_det.enable("strict")
    theano_det.disable()
    with warnings.catch_warnings():
        warnings.simplefilter("error", auditor.NondeterminismWarning)
        theano.function(inputs, gradient)


def test_enable_twice_changes_only_the_mode(theano, cpu_rule):
    inputs, gradient = embedding_gradient(theano)
    theano_det.enable("strict")
    theano_det.enable("warn")
    with pytest.warns(auditor.NondeterminismWarning):
        theano.function(inputs, gradient)
    theano_det.disable()
    assert auditor.function_maker_class().create.__name__ == "create"
    assert not hasattr(auditor.function_maker_class().create, "__wrapped__")


def test_a_clean_function_compiles_silently_in_strict_mode(theano):
    T = theano.tensor
    x = T.matrix()
    theano_det.enable("strict")
    with warnings.catch_warnings():
        warnings.simplefilter("error", auditor.NondeterminismWarning)
        assert theano.function([x], (x * 2).sum())([[1.0, 2.0]]) == 6.0


def test_enable_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="warn, strict"):
        theano_det.enable("loud")
