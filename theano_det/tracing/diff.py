"""`theano-det diff`: where two traces of one program part ways, and why.

The method: walk the traced calls of both runs in the order they happened; in
the first call whose fingerprints differ, the point of origin is the first node
(in execution order) whose outputs differ although every input was identical.
Everything after it differs only because it does. When no such node exists the
difference came in with the call's inputs (a different seed, data, or a value
computed outside the traced calls): the first node that reads a differing input
is named. Before any of this, the two traces must describe the same program
(same environment settings, same compiled graphs); if not, that is said first.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass, field

from theano_det.intarget import graph_audit
from theano_det.tracing.records import Call, Function, Trace

IDENTICAL, DIVERGED, STRUCTURAL = "identical", "diverged", "structural"

# Environment entries that must be equal for two traces to be comparable.
ENVIRONMENT_FIELDS = (("python",), ("theano", "version"), ("theano", "backend"), ("numpy",), ("gpu",),
                      ("cudnn", "version"))

# numpy dtype -> struct format, for the kept values.
STRUCT_FORMATS = {"float16": "e", "float32": "f", "float64": "d", "int8": "b", "uint8": "B", "int16": "h",
                  "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q", "bool": "?"}


@dataclass
class Origin:
    kind: str  # "node": outputs differ, inputs identical; "inputs": the call's inputs differ
    function: Function
    call: int
    position: int
    outputs: list  # indices of the node's outputs that differ
    inputs: list = field(default_factory=list)  # (index, where it comes from) of differing inputs ("inputs")
    within: dict | None = None  # the node that ran this call (scan's inner function)
    differences: list = field(default_factory=list)  # per differing output, when both values were kept
    note: str | None = None

    @property
    def node(self) -> dict:
        return self.function.nodes[self.position]

    def rule(self) -> dict | None:
        rule_id = self.node.get("rule")
        return next((rule for rule in rules() if rule["id"] == rule_id), None) if rule_id else None

    def to_json(self) -> dict:
        rule = self.rule()
        return {
            "kind": self.kind, "function": self.function.key, "function_name": self.function.name,
            "compiled_at": self.function.where, "call": self.call, "node": self.position,
            "op": self.node.get("op"), "op_class": self.node.get("class"), "algo": self.node.get("algo"),
            "line": self.node.get("line"), "outputs": self.outputs,
            "inputs": [{"input": index, "from": source} for index, source in self.inputs],
            "within": self.within, "differences": self.differences,
            "rule": None if rule is None else {"id": rule["id"], "title": rule["title"], "fix": rule["fix"]},
            "note": self.note,
        }


@dataclass
class DiffReport:
    status: str
    structural: list = field(default_factory=list)  # what makes the two runs different programs, first first
    origins: list = field(default_factory=list)
    compared_calls: int = 0
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"status": self.status, "structural": self.structural, "compared_calls": self.compared_calls,
                "origins": [origin.to_json() for origin in self.origins], "notes": self.notes}


_rules: list = []


def rules() -> list:
    if not _rules:
        _rules.extend(graph_audit.load_rules())
    return _rules


def compare(a: Trace, b: Trace, every_origin: bool = False) -> DiffReport:
    report = DiffReport(status=IDENTICAL)
    for name, trace in (("A", a), ("B", b)):
        if not trace.complete:
            last = f"its call {trace.calls[-1].number} of {trace.calls[-1].key}" if trace.calls else "any call"
            report.notes.append(f"{name} ({trace.path}) has no end record: the run was stopped (killed?) after "
                                f"{last}; compared up to there")
    report.structural = environment_differences(a, b) + function_differences(a, b)
    if report.structural:
        report.status = STRUCTURAL
        return report
    compare_calls(a, b, report, every_origin)
    if report.structural:
        report.status = STRUCTURAL
    elif report.origins:
        report.status = DIVERGED
    return report


# --- is it the same program? ---------------------------------------------------------------


def value_at(document: dict | None, path: tuple):
    for name in path:
        document = document.get(name) if isinstance(document, dict) else None
    return document


def environment_differences(a: Trace, b: Trace) -> list:
    if a.environment is None or b.environment is None:
        return []  # a run that compiled nothing: nothing to compare
    found = []
    paths = list(ENVIRONMENT_FIELDS)
    settings = sorted(set(value_at(a.environment, ("settings",)) or {}) | set(value_at(b.environment, ("settings",)) or {}))
    paths += [("settings", name) for name in settings]
    for path in paths:
        left, right = value_at(a.environment, path), value_at(b.environment, path)
        if left != right:
            found.append(f"the environments differ: {'.'.join(path if path[0] != 'settings' else path[1:])} "
                         f"is {left!r} in A and {right!r} in B")
    return found


def function_differences(a: Trace, b: Trace) -> list:
    found = []
    for left, right in zip(a.functions, b.functions):
        if left.key != right.key:
            found.append(f"function #{left.index} differs: A compiled {left.label()} ({left.key}), "
                         f"B compiled {right.label()} ({right.key}); {first_node_difference(left, right)}")
            return found
        if left.traced != right.traced:
            found.append(f"function {left.label()} is traced in {'A' if left.traced else 'B'} only "
                         "(trace both runs with the same --functions)")
            return found
    longer, shorter, names = (a, b, "AB") if len(a.functions) > len(b.functions) else (b, a, "BA")
    if len(longer.functions) != len(shorter.functions) and shorter.complete:
        extra = longer.functions[len(shorter.functions)]
        found.append(f"{names[0]} compiled {len(longer.functions)} functions, {names[1]} "
                     f"{len(shorter.functions)}: {names[0]} also compiled {extra.label()}")
    return found


def first_node_difference(left: Function, right: Function) -> str:
    for position, (one, other) in enumerate(zip(left.nodes, right.nodes)):
        if (one.get("op"), one.get("from")) != (other.get("op"), other.get("from")):
            return (f"first difference at node {position}: A runs {one.get('op')}{at(one)}, "
                    f"B runs {other.get('op')}{at(other)}")
    if len(left.nodes) != len(right.nodes):
        return f"A has {len(left.nodes)} nodes, B {len(right.nodes)}"
    return "same ops in the same order, different types, constants or outputs"


def at(node: dict) -> str:
    return f" (from {node['line']})" if node.get("line") else ""


# --- where do the values part? ----------------------------------------------------------------


def compare_calls(a: Trace, b: Trace, report: DiffReport, every_origin: bool) -> None:
    first_found = False
    for left, right in zip(a.calls, b.calls):
        if left.identity != right.identity:
            if not report.origins:
                report.structural.append(
                    f"the runs call different functions from traced call {report.compared_calls + 1} on: "
                    f"A ran call {left.number} of {a.function(left.key).label()}, B call {right.number} of "
                    f"{b.function(right.key).label()}")
            else:
                report.notes.append(f"the runs call different functions from traced call "
                                    f"{report.compared_calls + 1} on (after the divergence): stopped there")
            return
        report.compared_calls += 1
        if left.nodes == right.nodes:
            continue
        origins = call_origins(a, b, left, right, with_inputs=not first_found)
        first_found = first_found or bool(origins)
        report.origins.extend(origins)
        if report.origins and not every_origin:
            del report.origins[1:]
            return
    if len(a.calls) != len(b.calls):
        longer, names = (a, "AB") if len(a.calls) > len(b.calls) else (b, "BA")
        shorter = b if longer is a else a
        if shorter.complete:
            report.notes.append(f"{names[0]} traced {len(longer.calls)} calls, {names[1]} "
                                f"{len(shorter.calls)}: the extra calls were not compared")
    drop_explained_outer_nodes(report)


def call_origins(a: Trace, b: Trace, left: Call, right: Call, with_inputs: bool) -> list:
    """The nodes of one call whose outputs differ while their inputs match; else (when asked)
    the first node reading a differing input of the call."""
    function = a.function(left.key)
    origins = []
    first_input_difference = None
    for position, ((ins_a, outs_a), (ins_b, outs_b)) in enumerate(zip(left.nodes, right.nodes)):
        if ins_a == ins_b and outs_a != outs_b:
            differing = [index for index, (x, y) in enumerate(zip(outs_a, outs_b)) if x != y]
            origins.append(Origin("node", function, left.number, position, differing,
                                  within=describe_within(a, left.within),
                                  differences=value_differences(a, b, outs_a, outs_b, differing)))
        elif ins_a != ins_b and first_input_difference is None:
            sources = function.nodes[position].get("from") or []
            outside = [(index, sources[index] if index < len(sources) else "?")
                       for index, (x, y) in enumerate(zip(ins_a, ins_b))
                       if x != y and not (index < len(sources) and sources[index].startswith("n"))]
            if outside:
                first_input_difference = (position, outside,
                                          [index for index, (x, y) in enumerate(zip(outs_a, outs_b)) if x != y])
    if not origins and with_inputs and first_input_difference is not None:
        position, inputs, differing = first_input_difference
        named = [(index, input_name(function, source)) for index, source in inputs]
        origins.append(Origin("inputs", function, left.number, position, differing, inputs=named,
                              within=describe_within(a, left.within),
                              differences=value_differences(a, b, left.nodes[position][1], right.nodes[position][1],
                                                            differing)))
    if left.error or right.error:
        for origin in origins:
            origin.note = "the call failed in " + ("A" if left.error else "B") + f": {left.error or right.error}"
    return origins


def input_name(function: Function, source: str) -> str:
    if source.startswith("i") and source[1:].isdigit():
        number = int(source[1:])
        name = function.inputs[number] if number < len(function.inputs) else "?"
        return f"input {number} of the function ({name})"
    return "a constant" if source == "c" else source


def describe_within(trace: Trace, within: tuple | None) -> dict | None:
    if not within:
        return None
    key, call, position = within
    outer = trace.function(key)
    node = outer.nodes[position] if outer is not None and position < len(outer.nodes) else {}
    return {"function": key, "function_name": outer.name if outer else None,
            "compiled_at": outer.where if outer else None, "call": call, "node": position,
            "op": node.get("op"), "line": node.get("line")}


def drop_explained_outer_nodes(report: DiffReport) -> None:
    """A scan node whose inner call has an origin differs because of it: keep the inner origin only."""
    inner_runners = {(o.within["function"], o.within["call"], o.within["node"]) for o in report.origins if o.within}
    report.origins = [origin for origin in report.origins
                      if (origin.function.key, origin.call, origin.position) not in inner_runners]
    for origin in report.origins:
        if origin.kind == "node" and origin.node.get("inner") and origin.note is None:
            origin.note = ("this op runs an inner graph whose calls at this point were not traced; "
                           "trace more calls (--calls) to find the node inside it")


# --- how much do kept values differ? ----------------------------------------------------------


def value_differences(a: Trace, b: Trace, outs_a: list, outs_b: list, indices: list) -> list:
    found = []
    for index in indices:
        left, right = a.values.get(outs_a[index]), b.values.get(outs_b[index])
        if left is None or right is None:
            continue
        difference = array_difference(left, right)
        if difference is not None:
            found.append(dict(output=index, **difference))
    return found


def numbers(value: dict):
    code = STRUCT_FORMATS.get(value["dtype"])
    if code is None:
        return None
    return [item[0] for item in struct.iter_unpack("=" + code, base64.b64decode(value["data"]))]


def array_difference(left: dict, right: dict) -> dict | None:
    if left["shape"] != right["shape"] or left["dtype"] != right["dtype"]:
        return {"note": f"A has {left['dtype']}{left['shape']}, B {right['dtype']}{right['shape']}"}
    xs, ys = numbers(left), numbers(right)
    if xs is None or ys is None:
        return None
    max_abs = max_rel = 0.0
    count = 0
    for x, y in zip(xs, ys):
        if x == y or (x != x and y != y):  # equal, or both NaN
            continue
        count += 1
        delta = abs(float(x) - float(y))
        scale = max(abs(float(x)), abs(float(y)))
        max_abs = max(max_abs, delta)
        max_rel = max(max_rel, delta / scale if scale and not math.isinf(scale) else math.inf)
    return {"elements_differing": count, "elements": len(xs), "max_abs": max_abs, "max_rel": max_rel}


# --- for people -------------------------------------------------------------------------------


def report_lines(report: DiffReport) -> list:
    lines = []
    if report.status == STRUCTURAL:
        lines.append("the two traces are not of the same program:")
        lines += [f"  {difference}" for difference in report.structural]
        return lines
    if report.status == IDENTICAL:
        lines.append(f"identical: {plural(report.compared_calls, 'traced call')}, every node's outputs the same bits")
        return lines
    first = report.origins[0]
    lines.append(f"the runs diverge in call {first.call} of {first.function.label()} "
                 f"({plural(report.compared_calls, 'traced call')} compared)")
    for number, origin in enumerate(report.origins, start=1):
        lines += origin_lines(origin, number if len(report.origins) > 1 else None)
    return lines


def origin_lines(origin: Origin, number: int | None) -> list:
    node = origin.node
    title = "origin" if number is None else f"origin {number}"
    algo = f" (cuDNN algorithm {node['algo']})" if node.get("algo") else ""
    lines = []
    if origin.kind == "node":
        outputs = ", ".join(map(str, origin.outputs))
        lines.append(f"{title}: node {origin.position} {node.get('op')}{algo}: its inputs were identical, "
                     + (f"its outputs {outputs} differ" if len(origin.outputs) > 1 else f"its output {outputs} differs"))
    else:
        names = "; ".join(name for _, name in origin.inputs)
        lines.append(f"{title}: the call's inputs differ ({names}); the first node reading them is node "
                     f"{origin.position} {node.get('op')}{algo}")
    lines.append(f"  function: {origin.function.label()}, call {origin.call}")
    if origin.within:
        outer = origin.within
        lines.append(f"  inside: node {outer['node']} {outer['op']} of {outer['function_name'] or 'function'} "
                     f"({outer['function']}), call {outer['call']}"
                     + (f", from {outer['line']}" if outer.get("line") else ""))
    lines.append(f"  created at: {node.get('line') or 'unknown (an optimization made this node)'}")
    rule = origin.rule()
    if rule is not None:
        lines.append(f"  known non-deterministic op ({rule['id']}): {rule['title']}")
        lines.append(f"  fix: {rule['fix']}")
    elif origin.kind == "node":
        lines.append("  not in theano-det's catalogue of non-deterministic ops: look at this op's code "
                     "(atomics, unordered reductions, its own randomness)")
    for difference in origin.differences:
        if "note" in difference:
            lines.append(f"  output {difference['output']}: {difference['note']}")
        else:
            lines.append(f"  output {difference['output']}: {difference['elements_differing']} of "
                         f"{difference['elements']} elements differ, max abs difference "
                         f"{difference['max_abs']:.6g}, max rel difference {difference['max_rel']:.6g}")
    if origin.note:
        lines.append(f"  note: {origin.note}")
    return lines


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
