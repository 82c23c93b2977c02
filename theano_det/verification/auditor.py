"""`theano_det.audit(f)` and `theano_det.enable()`: name the ops that can break determinism.

The rules and their interpretation live in `intarget/` (shared with the verify
probe, which runs without theano-det); this module turns their findings into
objects, an exception and warnings for people calling Theano from Python.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass

from theano_det.intarget import graph_audit

MODES = ("warn", "strict")


@dataclass(frozen=True)
class Finding:
    """A node that can make results differ between runs, and what to do about it."""

    rule: str
    op: str
    op_class: str
    module: str
    certainty: str  # "certain" or "possible"
    fixed_by_patch: bool
    title: str
    why: str
    fix: str
    line: str | None  # "file:line" of the user code that created the node
    inside: tuple | None  # outer ops (Scan, OpFromGraph) whose inner graph holds the node
    versions: tuple  # releases whose sources define this op

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        values = dict(data)
        values["inside"] = tuple(values["inside"]) if values.get("inside") else None
        values["versions"] = tuple(values["versions"])
        return cls(**values)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["inside"] = list(self.inside) if self.inside else None
        data["versions"] = list(self.versions)
        return data

    def __str__(self) -> str:
        return graph_audit.describe(self.to_json())


class NondeterministicOpError(Exception):
    """Raised by `audit(f, strict=True)` and, after `enable("strict")`, by theano.function."""

    def __init__(self, findings):
        self.findings = list(findings)
        lines = [f"{len(self.findings)} node(s) can make results differ from run to run:"]
        lines += [f"- {finding}" for finding in self.findings]
        super().__init__("\n".join(lines))


class NondeterminismWarning(UserWarning):
    """Issued for each compiled function with findings after `enable("warn")`."""


@functools.lru_cache(maxsize=1)
def rules() -> tuple:
    return tuple(graph_audit.load_rules())


def audit(graph, strict: bool = False) -> list:
    """The findings for a compiled `theano.function`, a FunctionGraph, or an object that
    keeps a compiled function at `.function` (Keras' `model.train_function`).

    With strict=True, raise NondeterministicOpError listing all of them instead of
    returning a non-empty list.
    """
    findings = [Finding.from_dict(found) for found in graph_audit.audit(graph, list(rules()))]
    if strict and findings:
        raise NondeterministicOpError(findings)
    return findings


# What enable() replaced, so that disable() can put it back.
_hook = {"mode": None, "original_create": None, "maker": None}


def enable(mode: str = "warn") -> None:
    """Audit every function Theano compiles from now on.

    "warn" issues a NondeterminismWarning listing the findings; "strict" makes
    theano.function raise NondeterministicOpError before the function is linked.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    _hook["mode"] = mode
    if _hook["original_create"] is not None:
        return  # already hooked; only the mode changes
    maker = function_maker_class()
    original = maker.create

    @functools.wraps(original)
    def create(self, *args, **kwargs):
        if _hook["mode"] is not None:
            check_compiled(self.fgraph)
        return original(self, *args, **kwargs)

    _hook.update(original_create=original, maker=maker)
    maker.create = create


def disable() -> None:
    """Stop auditing compiled functions (undo `enable`)."""
    if _hook["original_create"] is not None:
        _hook["maker"].create = _hook["original_create"]
    _hook.update(mode=None, original_create=None, maker=None)


def check_compiled(fgraph) -> None:
    findings = audit(fgraph, strict=_hook["mode"] == "strict")
    if findings:
        message = str(NondeterministicOpError(findings))
        warnings.warn(NondeterminismWarning(message), stacklevel=caller_stacklevel())


def caller_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside Theano and theano-det: the
    user's theano.function call, so that the warning names the user's line."""
    skipped = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep]
    theano = sys.modules.get("theano")
    if getattr(theano, "__file__", None):
        skipped.append(os.path.dirname(os.path.abspath(theano.__file__)) + os.sep)
    level, frame = 2, sys._getframe(2)  # 2: the caller of check_compiled
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(tuple(skipped)):
        level, frame = level + 1, frame.f_back
    return level


def function_maker_class():
    """Theano's FunctionMaker (its module moved in Theano-PyMC)."""
    try:
        from theano.compile.function_module import FunctionMaker
    except ImportError:
        from theano.compile.function.types import FunctionMaker
    return FunctionMaker
