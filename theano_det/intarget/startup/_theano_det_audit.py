"""`theano-det audit`, the part inside the target: audit every function Theano compiles.

Runs inside the target interpreter (Python 3.5+, stdlib only). The `run`
bootstrap (sitecustomize.py) activates it when the host sets:

    THEANO_DET_AUDIT      "warn" (record the findings) or "strict" (also stop at the first)
    THEANO_DET_AUDIT_OUT  the file the findings are written to, one JSON line per compiled
                          function that has any, as they are found (the host prints them)

The rules are graph_audit.py's (the catalogue theano_det.audit and enable() use).
In strict mode theano.function raises NondeterministicOpError before the graph is
linked: theano_det's own class when the program has imported theano_det.
"""

import os
import sys

import _theano_det_compile_hook as compile_hook
from _theano_det_jsonlines import JsonLinesFile

MODE_VARIABLE = "THEANO_DET_AUDIT"
OUT_VARIABLE = "THEANO_DET_AUDIT_OUT"

_auditor = None


class NondeterministicOpError(Exception):
    """theano_det.NondeterministicOpError, for programs that have not loaded theano_det (same name)."""

    def __init__(self, findings):
        self.findings = list(findings)
        lines = ["%d node(s) can make results differ from run to run:" % len(self.findings)]
        lines += ["- %s" % finding for finding in self.findings]
        super(NondeterministicOpError, self).__init__("\n".join(lines))


def strict_error(findings, audit):
    # theano_det's own class when the program has loaded theano_det (only then can it name
    # the class to catch it); code run in the target never imports the host's package itself.
    auditor = sys.modules.get("theano_det.verification.auditor")
    try:
        return auditor.NondeterministicOpError([auditor.Finding.from_dict(found) for found in findings])
    except Exception:  # not loaded (or another environment's theano_det)
        return NondeterministicOpError([audit.describe(found) for found in findings])


def activate():
    global _auditor
    mode = os.environ.pop(MODE_VARIABLE, None)
    out = os.environ.pop(OUT_VARIABLE, None)
    if mode not in ("warn", "strict") or not out or _auditor is not None:
        return None
    _auditor = Auditor(mode, out)
    compile_hook.add_listener(_auditor)
    return _auditor


class Auditor(JsonLinesFile):
    def __init__(self, mode, path):
        JsonLinesFile.__init__(self, path)
        self.mode = mode
        self.compiled = 0
        self.rules = None

    def before_create(self, maker):
        audit = compile_hook.intarget_module("graph_audit")
        if self.rules is None:
            self.rules = audit.load_rules()
        self.compiled += 1
        findings = audit.audit_nodes(list(maker.fgraph.toposort()), self.rules)
        if not findings:
            return
        import _theano_det_trace

        stop = self.mode == "strict"
        self.write({"function": self.compiled, "where": _theano_det_trace.caller_line(),
                    "findings": findings, "stopped": stop})
        if stop:
            raise strict_error(findings, audit)

    def after_create(self, maker, function, linked):
        pass
