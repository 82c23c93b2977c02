"""`theano-det verify`: run the verify probe in the target interpreter and read its answer.

The probe (intarget/verify_probe.py) does the work inside the target, where Theano
is; this module starts it and renders the table people read (comparison.py
compares documents). It prints nothing: the CLI does.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from theano_det.errors import CannotRun
from theano_det.intarget import graph_audit, verify_probe

PROBE = Path(verify_probe.__file__)
CHECK_NAMES = verify_probe.CHECK_NAMES
DEFAULT_REPEAT = verify_probe.DEFAULT_REPEAT
PROBE_TIMEOUT = 3 * 3600  # a cold GPU compile cache can take many minutes; never hang forever

# Probe status -> meaning for the exit code (the CLI maps these to numbers).
DETERMINISTIC, NONDETERMINISTIC, CANNOT_RUN, ERROR = (
    verify_probe.DETERMINISTIC, verify_probe.NONDETERMINISTIC, verify_probe.CANNOT_RUN, verify_probe.ERROR)


@dataclass
class ProbeRun:
    document: dict
    output: str = ""  # what the probe printed on stdout (Theano sometimes prints there)


def require_probe_python(target) -> None:
    """The probe needs Python 3.5+ in the target (the locator, which found Theano, also runs on 2.7)."""
    version = tuple(int(part) for part in (target.python_version or "3.5").split(".")[:2])
    if version < (3, 5):
        raise CannotRun(f"verify runs its checks with the target's Python, and {target.python} is "
                        f"Python {target.python_version}; it needs 3.5 or newer",
                        hint="`patch`, `unpatch` and `status` work on it; verify a Python 3 environment")


def run_probe(python: str, repeat: int = DEFAULT_REPEAT, require_gpu: bool = False,
              checks: tuple = ()) -> ProbeRun:
    """Run the probe with `python` in this environment (THEANO_FLAGS, THEANORC apply)."""
    with tempfile.TemporaryDirectory(prefix="theano-det-verify-") as scratch:
        out = Path(scratch) / "verify.json"
        command = [python, str(PROBE), "--out", str(out), "--repeat", str(repeat)]
        command += ["--require-gpu"] if require_gpu else []
        for name in checks:
            command += ["--check", name]
        try:
            # stderr passes through (progress, Theano's messages); stdout is kept for the caller.
            done = subprocess.run(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  text=True, timeout=PROBE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CannotRun(f"cannot run the verify probe with {python}: {error}") from error
        if done.returncode != 0 or not out.is_file():
            raise CannotRun(
                f"the verify probe failed in {python} (exit status {done.returncode})",
                hint="its messages are above; `theano-det verify --python PATH` picks another interpreter",
            )
        try:
            document = json.loads(out.read_text(encoding="utf-8"))
        except ValueError as error:
            raise CannotRun(f"the verify probe wrote a document we cannot read: {error}") from error
    return ProbeRun(document, done.stdout)


# --- the table ---------------------------------------------------------------------

def report_lines(document: dict) -> list:
    """The human report: environment, one row per check, findings, status."""
    lines = []
    env = document.get("environment") or {}
    theano = env.get("theano") or {}
    if theano:
        lines.append(f"Theano {theano.get('version')} ({theano.get('backend')} backend), numpy "
                     f"{env.get('numpy')}, Python {env.get('python')} ({env.get('python_executable')})")
    if document.get("gpu"):
        cudnn = (env.get("cudnn") or {}).get("version") or "none"
        lines.append(f"GPU: {document['gpu']} (CUDA driver {env.get('cuda_driver')}, runtime "
                     f"{env.get('cuda_runtime')}, cuDNN {cudnn}, pygpu {env.get('pygpu')})")
    elif document.get("gpu_note"):
        lines.append(f"GPU: none. {document['gpu_note']}")
    settings = env.get("settings") or {}
    if settings:
        shown = " ".join(f"{key}={value}" for key, value in settings.items() if value not in (None, ""))
        lines.append(f"settings: {shown}")
    checks = document.get("checks", [])
    if checks:
        lines.append("")
        lines += table(checks, document.get("repeat"))
    for check in checks:
        algorithms = ", ".join(f"{entry['op']} {entry['algo'] or '(no choice)'}"
                               for entry in check.get("cudnn_algorithms") or [])
        if algorithms:
            lines.append(f"cuDNN algorithms in {check['name']}: {algorithms}")
    for check in checks:
        if check.get("note"):
            lines.append(f"{check['name']}: {check['note']}")
    for check in checks:
        for finding in check.get("findings") or []:
            lines.append(f"finding in {check['name']}: {graph_audit.describe(finding)}")
    for check in checks:
        if not check.get("runnable", True):
            lines.append(f"not runnable: {check['name']}: {check.get('reason')}. Fix: {check.get('fix')}")
        if check.get("error"):
            lines.append(f"error in {check['name']}: {check['error']}")
    if checks:
        lines.append(f"reference: {document.get('reference')}; tolerance: {document.get('tolerance')}")
    cpu_only = document.get("environment") and not document.get("gpu") and document.get("status") != CANNOT_RUN
    where = " (CPU only: no GPU was tested)" if cpu_only else ""
    lines.append(f"status: {document.get('status')}{where}: {document.get('summary')}")
    return lines


COLUMNS = ("check", "ops compiled", "cuDNN", "bitwise", "reference", "findings", "seconds")


def table(checks: list, repeat) -> list:
    rows = [COLUMNS] + [row(check, repeat) for check in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip() for r in rows]


def row(check: dict, repeat) -> tuple:
    if not check.get("runnable", True):
        return (check["name"], "-", "-", "not runnable", "-", "-", "-")
    ops = ", ".join(check.get("key_ops") or check.get("ops") or []) or "-"
    if check.get("bitwise_stable") is None:
        bitwise = "error" if check.get("error") else "-"
    elif check["bitwise_stable"]:
        bitwise = f"stable x{repeat}"
    else:
        bitwise = f"{check.get('distinct_outputs')} results/{repeat}"
    if check.get("matches_reference") is None:
        reference = "-"
    else:
        verdict = "ok" if check["matches_reference"] else "WRONG"
        reference = f"{verdict} ({check.get('max_abs_diff'):.2g})"
    findings = str(len(check.get("findings") or []))
    return (check["name"], ops, check.get("cudnn") or "-", bitwise, reference, findings,
            f"{check.get('seconds') or 0:.1f}")
