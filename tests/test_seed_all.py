"""theano_det.seed_all in real processes with Theano 1.0.5: streams made before and after the call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import first_on_pythonpath
from theano_det.seeding.in_process import check_seed

# Every program here runs on the patched copy of the venv's Theano (conftest.on_patched_theano).
pytestmark = pytest.mark.usefixtures("patched_environ")

PROGRAMS = Path(__file__).resolve().parent / "seeding_programs"
PROBE = PROGRAMS / "seed_all_probe.py"


def python(*args, env_extra=None, cwd=None):
    env = first_on_pythonpath(dict(os.environ, **(env_extra or {})), PROGRAMS)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


_probes = {}  # (seed, run) -> output; each process takes seconds, so tests share them


def probe(*wanted) -> list:
    """{source: printed values} of seed_all_probe.py, one process for each (seed, run)."""
    for key in wanted:
        if key not in _probes:
            done = python(PROBE, key[0])
            assert done.returncode == 0, done.stderr
            _probes[key] = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    return [_probes[key] for key in wanted]


# Sources that are random without seeding (the default MRG stream is always 12345).
RANDOM_UNSEEDED = ["RandomStreams before", "dropped stream before", "RandomStreams after",
                   "random", "numpy", "lasagne get_rng"]


def test_seed_all_gives_the_same_draws_in_two_processes_and_other_draws_for_another_seed():
    first, second, other = probe((7, 0), (7, 1), (8, 0))
    assert first == second
    draws = [name for name in first if name != "report"]
    assert len(draws) == 8
    for name in draws:
        assert first[name] != other[name], name


def test_without_seed_all_the_probe_differs_between_processes():
    first, second = probe(("none", 0), ("none", 1))
    for name in RANDOM_UNSEEDED:
        assert first[name] != second[name], name


def test_the_report_names_what_was_seeded():
    (output,) = probe((7, 0))
    report = json.loads(output["report"])
    assert report["seed"] == 7
    seeded = {item["what"]: item for item in report["seeded"]}
    assert seeded["random"]["seed"] == 7 and seeded["numpy.random"]["seed"] == 7
    # made before the call: keyed by order of creation; the dropped one through its state variable
    assert seeded["RandomStreams"]["key"] == "RandomStreams#0 (made before seeding)"
    assert seeded["MRG_RandomStreams"]["key"] == "MRG_RandomStreams#0 (made before seeding)"
    assert seeded["state variable"]["key"] == "MRG state #0 (stream dropped)"
    assert seeded["lasagne.random"]["key"] == "lasagne.random"


def test_streams_made_after_seed_all_are_keyed_by_where_they_are_made():
    program = (
        "import theano_det, sys\n"
        "theano_det.seed_all(3, hashseed='ignore')\n"
        "from theano.tensor.shared_randomstreams import RandomStreams\n"
        "def build():\n"
        "    return RandomStreams(), RandomStreams()\n"
        "build()\n"
        "import _theano_det_rngseed\n"
        "print([item['key'] for item in _theano_det_rngseed.created_streams()])\n"
    )
    done = python("-c", program)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "['RandomStreams@__main__:build#0', 'RandomStreams@__main__:build#1']"


def test_hashseed_warn_warns_when_the_interpreter_hash_seed_differs():
    program = "import theano_det; theano_det.seed_all(7)"
    assert "HashSeedWarning" in python("-c", program).stderr
    assert "HashSeedWarning" not in python("-c", program, env_extra={"PYTHONHASHSEED": "7"}).stderr
    assert "HashSeedWarning" not in python("-c", "import theano_det; theano_det.seed_all(7, hashseed='ignore')").stderr


def test_setting_pythonhashseed_inside_the_script_is_detected_as_not_in_effect():
    program = ("import os; os.environ['PYTHONHASHSEED'] = '7'\n"
               "import theano_det; print(theano_det.seed_all(7, hashseed='ignore') and 'ok')\n"
               "from theano_det.seeding.hashseed import hash_seed_in_effect; print(hash_seed_in_effect(7))")
    done = python("-c", program)
    assert done.stdout.split() == ["ok", "False"], done.stderr


REEXEC_PROBE = """
import os, sys
with open(sys.argv[1], "a") as log:
    log.write("started\\n")
import theano_det
report = theano_det.seed_all(7, hashseed="reexec")
print(hash("theano-det"), report.hashseed, sys.argv[2:])
"""


@pytest.mark.parametrize("as_module", [False, True], ids=["script", "module"])
def test_reexec_starts_the_program_once_more_with_the_hash_seed(tmp_path, as_module):
    (tmp_path / "reexec_probe.py").write_text(REEXEC_PROBE)
    log = tmp_path / "starts.log"
    target = ["-m", "reexec_probe"] if as_module else [tmp_path / "reexec_probe.py"]
    done = python(*target, log, "an", "argument", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected_hash = python("-c", "print(hash('theano-det'))", env_extra={"PYTHONHASHSEED": "7"}).stdout.strip()
    assert done.stdout.strip() == f"{expected_hash} PYTHONHASHSEED=7 in effect ['an', 'argument']"
    assert log.read_text() == "started\n" * 2


def test_reexec_does_not_loop_when_the_hash_seed_still_differs_after_one_reexec(tmp_path):
    (tmp_path / "reexec_probe.py").write_text(REEXEC_PROBE)
    log = tmp_path / "starts.log"
    # as the re-executed process would see it, had something dropped PYTHONHASHSEED on the way
    done = python(tmp_path / "reexec_probe.py", log, env_extra={"THEANO_DET_REEXEC": "7"})
    assert done.returncode != 0
    assert "re-executed once with PYTHONHASHSEED=7" in done.stderr
    assert log.read_text() == "started\n"


def test_reexec_refuses_python_c_clearly():
    done = python("-c", "import theano_det; theano_det.seed_all(7, hashseed='reexec')")
    assert done.returncode != 0
    assert "cannot re-execute a `python -c` command" in done.stderr


def test_reexec_refuses_a_program_read_from_stdin():
    done = subprocess.run([sys.executable, "-"], input="import theano_det; theano_det.seed_all(7, hashseed='reexec')",
                          capture_output=True, text=True, timeout=120)
    assert "cannot re-execute a program read from standard input" in done.stderr


def test_reexec_when_the_hash_seed_is_already_in_effect_does_nothing(tmp_path):
    (tmp_path / "reexec_probe.py").write_text(REEXEC_PROBE)
    log = tmp_path / "starts.log"
    done = python(tmp_path / "reexec_probe.py", log, env_extra={"PYTHONHASHSEED": "7"})
    assert done.returncode == 0, done.stderr
    assert log.read_text() == "started\n"


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 1.5, "7", True])
def test_a_seed_that_numpy_or_pythonhashseed_cannot_take_is_refused(seed):
    with pytest.raises((TypeError, ValueError)):
        check_seed(seed)
