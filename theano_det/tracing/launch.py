"""`theano-det trace` and `theano-det audit`: `run`'s plan, plus what the bootstrap should watch.

Both run the command exactly as `run` does (runner.plan: seed, flags, shims) and
add environment variables that the start-up bootstrap reads (see
intarget/startup/_theano_det_trace.py and _theano_det_audit.py). `trace` then
becomes the command like `run`; `audit` waits for it, to report at the end.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.seeding import runner
from theano_det.tracing import records as trace_format
from theano_det.errors import CannotRun, Refused

TRACE_VARIABLE = "THEANO_DET_TRACE"
CALLS_VARIABLE = "THEANO_DET_TRACE_CALLS"
FUNCTIONS_VARIABLE = "THEANO_DET_TRACE_FUNCTIONS"
KEEP_VARIABLE = "THEANO_DET_TRACE_KEEP"
AUDIT_VARIABLE = "THEANO_DET_AUDIT"
AUDIT_OUT_VARIABLE = "THEANO_DET_AUDIT_OUT"

CALL_RANGE = re.compile(r"\s*(\d+)\s*(-\s*(\d*)\s*)?")
MEBIBYTE = 1024 * 1024


def parse_calls(spec: str) -> str:
    """The SPEC of --calls, checked and written the way the bootstrap reads it ("1-3", "2,10-", "all")."""
    spec = spec.strip()
    if spec == "all":
        return spec
    parts = []
    for part in spec.split(","):
        match = CALL_RANGE.fullmatch(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not a call number or range (like 1-5, 100 or 10-)")
        low = int(match.group(1))
        high = match.group(3)
        if low < 1 or (high and int(high) < low):
            raise ValueError(f"{part.strip()!r}: calls are numbered from 1, ranges go upwards")
        parts.append(f"{low}-{high}" if match.group(2) else str(low))
    return ",".join(parts)


def trace_plan(command, out: Path, seed: int, calls: str, functions: str, keep_mib: int,
               python: str | None = None) -> runner.RunPlan:
    out = Path(out).absolute()
    if not out.parent.is_dir():
        raise Refused(f"the folder of {out} does not exist", hint="create it, or give another --out")
    if out.is_dir():
        raise Refused(f"{out} is a folder; --out is the trace file to write")
    if out.exists() and not trace_format.is_trace(out):
        raise Refused(f"{out} exists and is not a theano-det trace: it is left as it is",
                      hint="give a new file name, or remove that file yourself")
    plan = runner.plan(command, seed, python=python)
    plan.env[TRACE_VARIABLE] = str(out)
    plan.env[CALLS_VARIABLE] = calls
    plan.env[FUNCTIONS_VARIABLE] = functions
    plan.env[KEEP_VARIABLE] = str(keep_mib * MEBIBYTE)
    return plan


@dataclass
class AuditResult:
    returncode: int
    functions: list = field(default_factory=list)  # {"function", "where", "findings", "stopped"} per function
    stopped: bool = False  # --strict stopped the program at a finding

    @property
    def findings(self) -> list:
        return [dict(finding, compiled_at=entry.get("where")) for entry in self.functions
                for finding in entry["findings"]]

    def to_json(self) -> dict:
        return {"returncode": self.returncode, "stopped": self.stopped, "findings": self.findings}


def run_audit(command, seed: int, strict: bool, python: str | None = None) -> AuditResult:
    """Run the command as `run` does with every compiled function audited; wait for it."""
    plan = runner.plan(command, seed, python=python)
    with tempfile.TemporaryDirectory(prefix="theano-det-audit-") as folder:
        findings = Path(folder) / "findings.jsonl"
        plan.env[AUDIT_VARIABLE] = "strict" if strict else "warn"
        plan.env[AUDIT_OUT_VARIABLE] = str(findings)
        returncode = wait_for(plan.argv, plan.env)
        entries = read_findings(findings)
    return AuditResult(returncode, entries, stopped=any(entry.get("stopped") for entry in entries))


def wait_for(argv: list, env: dict) -> int:
    """Run the program to its end; SIGINT/SIGTERM go to it (it decides), and we wait."""
    try:
        child = subprocess.Popen(argv, env=env)
    except OSError as error:
        raise CannotRun(f"cannot start {argv[0]}: {error.strerror or error}") from error
    forwarded = {}

    def forward(number, frame):
        child.send_signal(number)

    for number in (signal.SIGINT, signal.SIGTERM):
        forwarded[number] = signal.signal(number, forward)
    try:
        return child.wait()
    finally:
        for number, handler in forwarded.items():
            signal.signal(number, handler)


def read_findings(path: Path) -> list:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill: the findings before it stand
    return entries


def exit_status(returncode: int) -> int:
    """A child killed by signal N reads as 128 + N, as shells report it."""
    return 128 - returncode if returncode < 0 else returncode

