"""Find the nodes of a Theano graph that can make its results differ from run to run.

The one place where the rules in nondeterminism_rules.json (beside this file) are
interpreted. theano-det imports it as `theano_det.intarget.graph_audit` (for
`theano_det.audit` and `theano_det.enable`), and the verify probe, which runs in
the target interpreter without theano-det, imports it from this folder. So it is
written for Python 3.5+, uses only the standard library and never imports Theano:
it reads the nodes it is given.
"""

import collections
import io
import json
import os
import sys

RULES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nondeterminism_rules.json")

_MISSING = object()

# Release names as the rules file spells them -> as people read them.
_DISTRIBUTION_PREFIXES = (("pymc-", "Theano-PyMC "),)


def load_rules(path=None):
    """The rules, in the file's order (the first rule that matches a node wins)."""
    with io.open(path or RULES_FILE, encoding="utf-8") as handle:
        data = json.load(handle, object_pairs_hook=collections.OrderedDict)
    return data["rules"]


def graph_nodes(graph):
    """The apply nodes of a compiled theano.function or a FunctionGraph, in execution order.

    Objects that keep a compiled function at `.function` (Keras 1 and 2's
    theano_backend.Function: `model.train_function`, Keras 1's
    `model.model.train_function`) stand for it.
    """
    given = graph
    for _ in range(3):  # a wrapper of a wrapper at most, then stop
        if hasattr(graph, "maker") or hasattr(graph, "toposort") or getattr(graph, "function", None) is None:
            break
        graph = graph.function
    maker = getattr(graph, "maker", None)
    if maker is not None and hasattr(maker, "fgraph"):
        graph = maker.fgraph
    if hasattr(graph, "toposort"):
        return list(graph.toposort())
    if given is None:
        raise TypeError("expected a compiled theano.function, got None (Keras makes model.train_function "
                        "when the model is first trained, or with model._make_train_function())")
    wrapped = "" if graph is given else " (at %s.function)" % type(given).__name__
    raise TypeError("expected a compiled theano.function or a FunctionGraph, or an object that "
                    "keeps one at .function (Keras' Function), got %s%s" % (type(graph).__name__, wrapped))


def inner_nodes(op):
    """The nodes of the graph an op runs inside itself (Scan, OpFromGraph); [] for other ops."""
    compiled = vars(op).get("fn") if hasattr(op, "__dict__") else None
    if compiled is not None and hasattr(compiled, "maker"):
        return graph_nodes(compiled)
    outputs = getattr(op, "outputs", None)  # the symbolic inner graph, before it is compiled
    if isinstance(outputs, (list, tuple)) and outputs and all(hasattr(out, "owner") for out in outputs):
        return nodes_above(outputs)
    return []


def nodes_above(outputs):
    """Every apply node that the variables in `outputs` depend on, inputs first."""
    seen = set()
    ordered = []
    stack = [(out.owner, False) for out in reversed(list(outputs)) if out.owner is not None]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            ordered.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for inp in reversed(node.inputs):
            if inp.owner is not None and id(inp.owner) not in seen:
                stack.append((inp.owner, False))
    return ordered


def op_module_of(file):
    """The module a class in the `theano` package file `file` belongs to."""
    return "theano." + file[:-len(".py")].replace("/", ".")


def matching_op_entry(rule, op):
    cls = type(op)
    for entry in rule["ops"]:
        if cls.__name__ == entry["class"] and cls.__module__ == op_module_of(entry["file"]):
            return entry
    return None


def node_attribute(node, name):
    """An op setting, or _MISSING. Theano 0.7's cuDNN ops keep some settings (such as
    the pooling mode) on the descriptor op that feeds them, so those are looked at too."""
    value = getattr(node.op, name, _MISSING)
    if value is not _MISSING:
        return value
    for inp in node.inputs:
        owner = getattr(inp, "owner", None)
        if owner is not None and type(owner.op).__name__.endswith("Desc"):
            value = getattr(owner.op, name, _MISSING)
            if value is not _MISSING:
                return value
    return _MISSING


def condition_holds(condition, node):
    if "input_ndim" in condition:
        return bool(node.inputs) and getattr(node.inputs[0], "ndim", None) == condition["input_ndim"]
    if "attribute" in condition:
        value = node_attribute(node, condition["attribute"])
        if value is _MISSING:
            return bool(condition.get("when_absent", False))
        return value in condition["in"]
    raise ValueError("unknown condition in the rules file: %r" % (condition,))


def first_matching_rule(rules, node):
    for rule in rules:
        entry = matching_op_entry(rule, node.op)
        if entry is not None and all(condition_holds(c, node) for c in rule["when"]):
            return rule, entry
    return None, None


def audit_nodes(nodes, rules=None, inside=None):
    """One finding (a dict) per node that can be non-deterministic, inner graphs included."""
    rules = load_rules() if rules is None else rules
    findings = []
    for node in nodes:
        rule, entry = first_matching_rule(rules, node)
        if rule is not None:
            findings.append(make_finding(rule, entry, node, inside))
        inner = inner_nodes(node.op)
        if inner:
            findings.extend(audit_nodes(inner, rules, (inside or []) + [type(node.op).__name__]))
    return findings


def audit(graph, rules=None):
    """Findings for a compiled theano.function or a FunctionGraph."""
    return audit_nodes(graph_nodes(graph), rules)


def make_finding(rule, entry, node, inside):
    return collections.OrderedDict([
        ("rule", rule["id"]),
        ("op", str(node.op)),
        ("op_class", type(node.op).__name__),
        ("module", type(node.op).__module__),
        ("certainty", rule["certainty"]),
        ("fixed_by_patch", rule["fixed_by_patch"]),
        ("title", rule["title"]),
        ("why", rule["why"]),
        ("fix", rule["fix"]),
        ("line", user_line(node)),
        ("inside", inside),
        ("versions", [release_label(name) for name in entry["releases"]]),
    ])


def release_label(name):
    for prefix, label in _DISTRIBUTION_PREFIXES:
        if name.startswith(prefix):
            return label + name[len(prefix):]
    return "Theano " + name


def user_line(node):
    """'file:line' of the user code that created the node, from Theano's trace tag, or None.

    The trace lists the frames from the outermost in; the user's line is the last
    frame outside Theano (and Keras and Lasagne, which build graphs for the user)
    and outside an op's own make_node (the line that applied the op, not the op's
    code); when every frame is in those packages, the last frame outside Theano.
    """
    libraries = _library_dirs()
    theano_dir = libraries[:1]
    for skipped in (libraries, theano_dir):
        for out in node.outputs:
            for frame in reversed(_first_trace(getattr(out.tag, "trace", None))):
                filename, lineno = frame[0], frame[1]
                if skipped and os.path.abspath(filename).startswith(skipped):
                    continue
                if len(frame) > 2 and frame[2] == "make_node" and skipped is libraries:
                    continue
                return "%s:%s" % (filename, lineno)
    return None


def _first_trace(trace):
    """Theano 0.7 stores one trace (a list of frames); later versions a list of traces."""
    if not trace:
        return []
    first = trace[0]
    if len(first) and isinstance(tuple(first)[0], str):
        return [tuple(frame) for frame in trace]  # a single trace of frames
    return [tuple(frame) for frame in first]


def _library_dirs():
    """The package folders of Theano (first; absent when not imported), Keras and Lasagne."""
    dirs = []
    for name in ("theano", "keras", "lasagne"):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
        elif name == "theano":
            return ()
    return tuple(dirs)


def op_names(nodes):
    """The class names of the ops in `nodes` (inner graphs included), each once, in order."""
    names = []
    for node in nodes:
        for name in [type(node.op).__name__] + op_names(inner_nodes(node.op)):
            if name not in names:
                names.append(name)
    return names


def cudnn_algorithms(nodes):
    """The algorithm each cuDNN convolution node was compiled with (None where the op has no choice)."""
    found = []
    for node in nodes:
        name = type(node.op).__name__
        if name.startswith("GpuDnnConv") and name != "GpuDnnConvDesc":
            algo = node_attribute(node, "algo")
            ndim = getattr(node.inputs[0], "ndim", None) if node.inputs else None
            found.append(collections.OrderedDict([
                ("op", name), ("algo", None if algo is _MISSING else algo), ("ndim", ndim)]))
        found.extend(cudnn_algorithms(inner_nodes(node.op)))
    return found


def describe(finding):
    """One paragraph for people: what, where, why, and the fix."""
    where = " (created at %s)" % finding["line"] if finding.get("line") else ""
    inside = " inside %s" % " > ".join(finding["inside"]) if finding.get("inside") else ""
    risk = "is non-deterministic" if finding["certainty"] == "certain" else "may be non-deterministic"
    return "%s%s%s %s: %s Fix: %s" % (
        finding["op"], inside, where, risk, finding["why"], finding["fix"])
