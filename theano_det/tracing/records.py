"""Reading a trace written by `theano-det trace` (intarget/startup/_theano_det_trace.py).

A trace is JSON lines, each record written whole by one write(). So a process
that was killed leaves complete records and no `end` record: that trace is read
up to the kill. A line cut in the middle, a line that is not a record, or a
file that does not start with our header is damage: TraceDamaged (refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.errors import Refused

FORMAT = "theano-det-trace"
VERSION = 1
RECORD_TYPES = ("header", "environment", "function", "value", "call", "end")


class TraceDamaged(Refused):
    """The file is not a trace, or a damaged one."""


@dataclass
class Function:
    key: str
    index: int
    name: str | None
    where: str | None  # "file:line" of the program's call that compiled it
    traced: bool
    problem: str | None  # why its calls could not be traced, if so
    inputs: list
    nodes: list  # one dict per node in execution order: op, class, line, rule?, algo?, inner?

    def label(self) -> str:
        where = f" at {self.where}" if self.where else ""
        return f"{self.name or 'function'} #{self.index}{where}"


@dataclass
class Call:
    key: str
    number: int
    within: tuple | None  # (key, call, node position) of the traced node that ran this call
    nodes: list  # [[input fingerprints], [output fingerprints]] per node
    error: str | None

    @property
    def identity(self) -> tuple:
        return self.key, self.number


@dataclass
class Trace:
    path: Path
    header: dict
    environment: dict | None = None
    functions: list = field(default_factory=list)  # in compilation order
    calls: list = field(default_factory=list)  # in the order they finished
    values: dict = field(default_factory=dict)  # fingerprint -> {"dtype", "shape", "data"}
    complete: bool = False  # an `end` record: the process exited normally

    def function(self, key: str) -> Function | None:
        return self._by_key().get(key)

    def _by_key(self) -> dict:
        if getattr(self, "_index", None) is None or len(self._index) != len(self.functions):
            self._index = {function.key: function for function in self.functions}
        return self._index


def is_trace(path: Path) -> bool:
    """Whether the file starts with a trace header (so writing a new trace over it loses nothing else)."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(4096)
        return json.loads(first).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read(path: Path) -> Trace:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TraceDamaged(f"cannot read {path}: {error.strerror or error}") from error
    if not data:
        raise TraceDamaged(f"{path} is empty: not a theano-det trace",
                           hint="the traced program did not start, or the file was emptied")
    lines = data.split(b"\n")
    if lines[-1]:
        raise TraceDamaged(f"{path} is truncated: its last record (line {len(lines)}) is cut off",
                           hint="a trace that was copied or written only in part; trace again")
    trace = None
    for number, line in enumerate(lines[:-1], start=1):
        record = parse_line(path, number, line)
        if trace is None:
            trace = start(path, record)
            continue
        add(trace, record, path, number)
    return trace


def parse_line(path: Path, number: int, line: bytes) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("t") not in RECORD_TYPES:
        what = "not a theano-det trace" if number == 1 else f"damaged at line {number}"
        raise TraceDamaged(f"{path} is {what}: the line is not a trace record")
    return record


def start(path: Path, record: dict) -> Trace:
    if record.get("t") != "header" or record.get("format") != FORMAT:
        raise TraceDamaged(f"{path} is not a theano-det trace: it does not start with a trace header")
    if record.get("version") != VERSION:
        raise TraceDamaged(f"{path} is a trace of format version {record.get('version')}; "
                           f"this theano-det reads version {VERSION}",
                           hint="compare traces made by the same theano-det version")
    return Trace(path=path, header=record)


def add(trace: Trace, record: dict, path: Path, number: int) -> None:
    kind = record["t"]
    try:
        if trace.complete:
            raise ValueError("a record after the end record")
        if kind == "environment":
            trace.environment = {name: value for name, value in record.items() if name != "t"}
        elif kind == "function":
            trace.functions.append(Function(
                key=str(record["key"]), index=int(record["index"]), name=record.get("name"),
                where=record.get("where"), traced=bool(record.get("traced")), problem=record.get("problem"),
                inputs=list(record.get("inputs") or []), nodes=[dict(node) for node in record["nodes"]]))
        elif kind == "value":
            trace.values[str(record["fp"])] = {"dtype": str(record["dtype"]), "shape": list(record["shape"]),
                                               "data": str(record["data"])}
        elif kind == "call":
            function = trace.function(str(record["key"]))
            nodes = [[list(inputs), list(outputs)] for inputs, outputs in record["nodes"]]
            if function is None:
                raise ValueError(f"a call of function {record['key']}, which the trace does not define")
            if len(nodes) > len(function.nodes) or (len(nodes) < len(function.nodes) and not record.get("error")):
                raise ValueError(f"a call of {function.key} with {len(nodes)} nodes; the function has "
                                 f"{len(function.nodes)}")
            within = record.get("within")
            trace.calls.append(Call(key=function.key, number=int(record["call"]),
                                    within=tuple(within) if within else None, nodes=nodes,
                                    error=record.get("error")))
        elif kind == "end":
            trace.complete = True
        else:  # a second header
            raise ValueError("a second header")
    except (KeyError, TypeError, ValueError) as error:
        detail = error.args[0] if isinstance(error, ValueError) and error.args else f"bad record ({error!r})"
        raise TraceDamaged(f"{path} is damaged at line {number}: {detail}") from error
