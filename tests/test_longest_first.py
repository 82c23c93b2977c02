"""tests/longest_first.py: each run records how long every test file took, and the next
collects the files longest first, each file's tests together and in their order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from longest_first import CACHE_KEY

TESTS = Path(__file__).resolve().parent
FILES = {
    "test_quick": "def test_one():\n    pass\n\ndef test_two():\n    pass\n",
    "test_slow": "import time\n\ndef test_first():\n    time.sleep(0.2)\n\ndef test_second():\n    pass\n",
    "test_middle": "import time\n\ndef test_only():\n    time.sleep(0.05)\n",
}


def project(pytester):
    pytester.makeconftest('pytest_plugins = ["longest_first"]\n')
    pytester.makepyfile(**FILES)


def collected(pytester) -> list:
    result = pytester.runpytest("--collect-only", "-q")
    return [line for line in result.outlines if "::" in line]


def record(pytester) -> dict:
    path = pytester.path / ".pytest_cache" / "v" / CACHE_KEY
    return json.loads(path.read_text())


def test_without_a_record_the_files_with_the_most_tests_go_first(pytester):
    project(pytester)
    assert collected(pytester) == [
        "test_quick.py::test_one", "test_quick.py::test_two",
        "test_slow.py::test_first", "test_slow.py::test_second",
        "test_middle.py::test_only",
    ]


def test_a_run_records_each_file_and_the_next_collects_the_longest_first(pytester):
    project(pytester)
    pytester.runpytest().assert_outcomes(passed=5)
    seconds = record(pytester)
    assert set(seconds) == {"test_quick.py", "test_slow.py", "test_middle.py"}
    assert seconds["test_slow.py"] >= 0.2 and 0.05 <= seconds["test_middle.py"] < 0.2
    assert collected(pytester) == [
        "test_slow.py::test_first", "test_slow.py::test_second",
        "test_middle.py::test_only",
        "test_quick.py::test_one", "test_quick.py::test_two",
    ]


def test_a_partial_run_updates_its_files_and_keeps_the_others(pytester):
    project(pytester)
    pytester.runpytest().assert_outcomes(passed=5)
    before = record(pytester)
    pytester.runpytest("test_quick.py").assert_outcomes(passed=2)
    after = record(pytester)
    assert after["test_slow.py"] == before["test_slow.py"] and after["test_middle.py"] == before["test_middle.py"]
    assert set(after) == set(before)


@pytest.mark.parametrize("damaged", ['["not", "a", "record"]', '{"test_slow.py": "long"}', "{not json"])
def test_a_damaged_record_is_taken_as_none_and_replaced(pytester, damaged):
    project(pytester)
    path = pytester.path / ".pytest_cache" / "v" / CACHE_KEY
    path.parent.mkdir(parents=True)
    path.write_text(damaged)
    pytester.runpytest().assert_outcomes(passed=5)
    assert set(record(pytester)) == {"test_quick.py", "test_slow.py", "test_middle.py"}


def test_under_xdist_the_controller_records_every_files_time(pytester, monkeypatch):
    """The workers run the tests and report to the controller, which alone writes the record."""
    project(pytester)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "--no-loadscope-reorder")
    result.assert_outcomes(passed=5)
    seconds = record(pytester)
    assert set(seconds) == {"test_quick.py", "test_slow.py", "test_middle.py"}
    assert seconds["test_slow.py"] >= 0.2
