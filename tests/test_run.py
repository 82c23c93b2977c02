"""`theano-det run`: an unmodified script made reproducible; the command's process semantics kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import first_on_pythonpath, run_cli
from theano_det.seeding import runner

PROGRAMS = Path(__file__).resolve().parent / "seeding_programs"
SOURCES = PROGRAMS / "rng_sources.py"


def with_programs(**extra) -> dict:
    """The test environment with the Lasagne stand-in importable (first on PYTHONPATH)."""
    return first_on_pythonpath(dict(os.environ, **extra), PROGRAMS)


def draws(*run_args, script_args=()) -> dict:
    """{source: value} printed by rng_sources.py, under `theano-det run RUN_ARGS` (plain when None)."""
    command = [sys.executable, SOURCES, *script_args]
    if run_args == (None,):
        done = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=with_programs(), timeout=600)
    else:
        done = run_cli("run", *run_args, "--", *command, env=with_programs())
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


@pytest.mark.usefixtures("patched_environ")  # Theano programs: see conftest.on_patched_theano
def test_an_unmodified_script_prints_the_same_under_run_with_one_seed_and_differs_with_another():
    first, second, other = draws("--seed", 7), draws("--seed", 7), draws("--seed", 8)
    assert first == second
    assert len(first) == 6
    for source in first:
        assert first[source] != other[source], source


@pytest.mark.usefixtures("patched_environ")  # Theano programs: see conftest.on_patched_theano
def test_the_same_script_run_plainly_differs_between_processes():
    first, second = draws(None), draws(None)
    # MRG_RandomStreams() is always seeded with 12345, the rest is not seeded
    for source in ("random", "numpy", "RandomStreams", "lasagne get_rng", "set order"):
        assert first[source] != second[source], source


@pytest.mark.usefixtures("patched_environ")  # Theano programs: see conftest.on_patched_theano
def test_another_stream_made_elsewhere_does_not_shift_the_other_streams():
    assert draws("--seed", 7, script_args=["--extra-stream"]) == draws("--seed", 7)


EXPLICIT_SEEDS = """
from theano.sandbox.rng_mrg import MRG_RandomStreams
from theano.tensor.shared_randomstreams import RandomStreams
a, b = MRG_RandomStreams(seed=5), MRG_RandomStreams(5)
c, d = RandomStreams(seed=11), RandomStreams(11)
print(a.rstate.tolist() == b.rstate.tolist() == MRG_RandomStreams.__new__(MRG_RandomStreams).__class__(5).rstate.tolist())
print(c.gen_seedgen.randint(2 ** 30) == d.gen_seedgen.randint(2 ** 30))
print(MRG_RandomStreams().rstate.tolist() != [12345] * 6)
"""


@pytest.mark.usefixtures("patched_environ")  # Theano programs: see conftest.on_patched_theano
def test_streams_made_with_a_seed_keep_it_and_only_the_others_get_ours():
    """A program may rely on two streams sharing a seed; run must not give them different ones."""
    done = run_cli("run", "--seed", "3", "--", sys.executable, "-c", EXPLICIT_SEEDS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]


def test_the_exit_status_is_the_commands():
    done = run_cli("run", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert done.returncode == 3
    assert done.stderr == ""


def test_stdin_stdout_and_stderr_pass_through_unchanged():
    program = "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper()); sys.stderr.write('to stderr')"
    done = run_cli("run", "--", sys.executable, "-c", program, input="some input\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "SOME INPUT\n", "to stderr")


def start_and_wait_until_ready(program: str) -> subprocess.Popen:
    # SIGINT as a terminal gives it: a test run started in the background of a script
    # inherits it ignored, and Python then keeps ignoring it (no KeyboardInterrupt).
    process = subprocess.Popen(
        [sys.executable, "-m", "theano_det", "run", "--", sys.executable, "-c", program],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout.readline().strip() == str(process.pid)  # ready; and it is the same process
    return process


HANDLES_SIGTERM = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))
print(os.getpid(), flush=True)
time.sleep(60)
"""

SLEEPS = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"


def test_signals_reach_the_command_and_its_handler_decides_the_exit_status():
    process = start_and_wait_until_ready(HANDLES_SIGTERM)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 42


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_command_killed_by_a_signal_is_seen_as_killed_by_that_signal(number):
    process = start_and_wait_until_ready(SLEEPS)
    process.send_signal(number)
    # a shell reports 128 + N for this
    assert process.wait(timeout=60) == -number


@pytest.mark.parametrize("seed", ["abc", "-1", str(2 ** 32), "1.5"])
def test_a_seed_that_is_not_an_integer_in_range_is_a_usage_error(seed):
    done = run_cli("run", "--seed", seed, "--", sys.executable, "-c", "print('ran')")
    assert done.returncode == 2
    assert "--seed" in done.stderr and "ran" not in done.stdout


def test_a_missing_command_cannot_run():
    done = run_cli("run", "--", "no-such-program-anywhere")
    assert done.returncode == 4
    assert "command not found: no-such-program-anywhere" in done.stderr


def test_pythonhashseed_is_set_before_the_interpreter_starts():
    expected = subprocess.run([sys.executable, "-c", "print(hash('abc'))"], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONHASHSEED="7")).stdout
    done = run_cli("run", "--seed", 7, "--", sys.executable, "-c", "print(hash('abc'))")
    assert done.stdout == expected


def test_an_existing_sitecustomize_still_runs(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n")
    program = "import os, random; print(os.environ.get('USER_SITECUSTOMIZE'), random.random())"
    done = run_cli("run", "--seed", 7, "--", sys.executable, "-c", program,
                   env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    import random

    assert done.stdout.split() == ["ran", str(random.Random(7).random())], done.stderr


def test_the_legacy_aliases_are_there_by_default_and_not_with_no_legacy_shims():
    program = "import collections; print(hasattr(collections, 'Iterable'), hasattr(collections, 'MutableSet'))"
    assert run_cli("run", "--", sys.executable, "-c", program).stdout.split() == ["True", "True"]
    assert run_cli("run", "--no-legacy-shims", "--", sys.executable, "-c", program).stdout.split() == ["False", "False"]


def test_the_old_spelling_no_compat_still_works_and_says_the_new_one():
    program = "import collections; print(hasattr(collections, 'Iterable'))"
    done = run_cli("run", "--no-compat", "--", sys.executable, "-c", program)
    assert done.stdout.split() == ["False"]
    assert "--no-legacy-shims" in done.stderr


THEANO_CONFIG = ("import theano; c = theano.config; "
                 "print(c.deterministic, c.dnn.conv.algo_bwd_filter, c.dnn.conv.algo_bwd_data, "
                 "c.optimizer_excluding, c.floatX)")


def test_the_deterministic_settings_reach_theano_and_the_users_other_flags_are_kept():
    user_flags = os.environ["THEANO_FLAGS"] + ",floatX=float32,optimizer_excluding=local_mine"
    done = run_cli("run", "--", sys.executable, "-c", THEANO_CONFIG, env=dict(os.environ, THEANO_FLAGS=user_flags))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["more", "deterministic", "deterministic",
                                   "local_mine:local_gpua_pool_dnn_grad_stride", "float32"]


def test_a_user_flag_that_contradicts_determinism_is_reported_and_overridden():
    user_flags = os.environ["THEANO_FLAGS"] + ",deterministic=default"
    done = run_cli("run", "--", sys.executable, "-c", THEANO_CONFIG, env=dict(os.environ, THEANO_FLAGS=user_flags))
    assert done.stdout.split()[0] == "more"
    assert "your deterministic=default is not deterministic; deterministic=more is used" in done.stderr


def test_no_flags_leaves_theano_flags_alone():
    program = "import os; print(os.environ['THEANO_FLAGS'])"
    done = run_cli("run", "--no-flags", "--", sys.executable, "-c", program)
    assert done.stdout.strip() == os.environ["THEANO_FLAGS"]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """The interpreter of a new, empty virtual environment: no Theano is importable there."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=300)
    return str(folder / "bin" / "python")


def test_the_flags_are_for_the_theano_of_the_commands_own_interpreter(bare_python):
    program = "import os; print(os.environ['THEANO_FLAGS'])"
    done = run_cli("run", "--", bare_python, "-c", program)
    assert f"no Theano is importable by {bare_python}" in done.stderr
    assert done.stdout.strip() == os.environ["THEANO_FLAGS"]


def test_python_chooses_whose_theano_the_flags_are_for_and_says_so_when_the_command_differs(bare_python):
    program = "import os; print(os.environ['THEANO_FLAGS'])"
    done = run_cli("run", "--python", sys.executable, "--", bare_python, "-c", program)
    assert "deterministic=more" in done.stdout
    assert (f"the Theano settings are for the Theano of {sys.executable}, but the command runs {bare_python}"
            in done.stderr)


def test_python_without_theano_cannot_run(bare_python):
    done = run_cli("run", "--python", bare_python, "--", sys.executable, "-c", "print('ran')")
    assert done.returncode == 4
    assert "no Theano is importable" in done.stderr and "ran" not in done.stdout


# --- the THEANO_FLAGS merge, as text ---------------------------------------------------------

OURS = {"dnn.conv.algo_bwd_filter": "deterministic", "deterministic": "more",
        "optimizer_excluding": "local_gpua_pool_dnn_grad_stride"}


def test_merge_appends_ours_after_the_users_text_kept_as_it_is():
    merged, added, notes = runner.merge_flags("floatX=float32,gcc.cxxflags='-O3 -g'", OURS)
    assert merged == ("floatX=float32,gcc.cxxflags='-O3 -g',dnn.conv.algo_bwd_filter=deterministic,"
                      "deterministic=more,optimizer_excluding=local_gpua_pool_dnn_grad_stride")
    assert added == OURS and notes == []


def test_merge_adds_nothing_the_user_already_has():
    user = "deterministic=more,dnn.conv.algo_bwd_filter=deterministic,optimizer_excluding=local_gpua_pool_dnn_grad_stride"
    assert runner.merge_flags(user, OURS) == (user, {}, [])


def test_merge_keeps_the_users_excluded_optimizers_and_reads_both_key_spellings():
    merged, added, notes = runner.merge_flags("optimizer_excluding=a:b,dnn__conv__algo_bwd_filter=none", OURS)
    assert added["optimizer_excluding"] == "a:b:local_gpua_pool_dnn_grad_stride"
    assert [note.split(";")[0] for note in notes] == [
        "THEANO_FLAGS: your dnn.conv.algo_bwd_filter=none is not deterministic"]
    assert runner.parse_flags(merged)["optimizer_excluding"] == "a:b:local_gpua_pool_dnn_grad_stride"


def test_the_startup_folder_goes_first_on_pythonpath_once():
    once = runner.with_startup_dir("a" + os.pathsep + "b")
    assert once.split(os.pathsep) == [str(runner.STARTUP_DIR), "a", "b"]
    assert runner.with_startup_dir(once) == once
