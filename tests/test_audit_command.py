"""`theano-det audit -- CMD`: every function an unmodified program compiles is audited."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import run_cli

PROGRAM = Path(__file__).resolve().parent / "trace_programs" / "dev20_graph.py"


def dev20_line() -> str:
    (number,) = [n for n, text in enumerate(PROGRAM.read_text().splitlines(), start=1) if "DEV20-LINE" in text]
    return f"{PROGRAM}:{number}"


def test_audit_lists_each_finding_with_the_users_line_and_the_fix_at_the_end():
    done = run_cli("audit", "--", sys.executable, PROGRAM)
    assert done.returncode == 1, done.stderr
    assert done.stdout.split("\n")[:3] == ["6.0", "not linked on this machine", "9.0"]  # the program ran on
    (report,) = [line for line in done.stderr.splitlines() if line.startswith("theano-det audit: ")]
    assert "GpuAdvancedIncSubtensor1_dev20" in report
    assert f"(created at {dev20_line()})" in report
    assert "Fix: Run `theano-det patch`" in report


def test_audit_json_is_one_document_on_stdout_after_the_programs_output():
    done = run_cli("audit", "--json", "--", sys.executable, PROGRAM)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout[done.stdout.index("{"):])
    assert document["exit_code"] == 1 and document["stopped"] is False and document["returncode"] == 0
    (finding,) = document["findings"]
    assert finding["rule"] == "dev20-atomic-inc-subtensor"
    assert finding["line"] == dev20_line()
    assert finding["compiled_at"].startswith(f"{PROGRAM}:")


def test_strict_stops_the_program_at_the_first_nondeterministic_op():
    done = run_cli("audit", "--strict", "--", sys.executable, PROGRAM)
    assert done.returncode == 1
    assert done.stdout.split("\n")[:1] == ["6.0"] and "9.0" not in done.stdout  # stopped before the third
    assert "NondeterministicOpError" in done.stderr  # the program's own traceback
    assert "--strict stopped the program" in done.stderr


def test_a_program_without_findings_exits_with_its_own_status():
    clean = "import theano, theano.tensor as T; x = T.vector(); theano.function([x], x * 2)"
    done = run_cli("audit", "--", sys.executable, "-c", clean)
    assert done.returncode == 0, done.stderr
    assert "no op known to be non-deterministic was compiled" in done.stderr
    failing = run_cli("audit", "--", sys.executable, "-c", "import sys; sys.exit(5)")
    assert failing.returncode == 5
