"""Failures, signals, kills and concurrent runs never leave a half-patched installation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_cli
from test_patch_releases import tree_hashes
from theano_det import operations
from theano_det.patching import transaction
from theano_det.errors import Refused
from theano_det.target import describe_package

REAL_REPLACE, REAL_STAGE = os.replace, transaction.stage
# 0.9.0 has four files to patch (sandbox/cuda/opt.py, gpuarray/opt.py and the compat
# patches' scan_module/scan_perform.c and gof/op.py): four backups, the manifest
# ("applying"), the four files, the manifest ("applied").
FILES_OF_0_9_0 = ("sandbox/cuda/opt.py", "gpuarray/opt.py", "scan_module/scan_perform.c", "gof/op.py")
WRITES_FOR_0_9_0 = 2 * len(FILES_OF_0_9_0) + 2


def failing_once_at(count: int, function, make_error):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args)
        if len(calls) == count + 1:
            raise make_error()
        return function(*args, **kwargs)

    return wrapper, calls


@pytest.mark.parametrize("failing_write", range(WRITES_FOR_0_9_0))
@pytest.mark.parametrize("phase", ["stage", "replace"])
def test_a_failure_at_any_write_leaves_the_tree_pristine(release_copy, monkeypatch, failing_write, phase):
    package = release_copy("0.9.0")
    pristine = tree_hashes(package.parent)
    if phase == "stage":  # e.g. the disk fills up while the new contents are written
        wrapper, _ = failing_once_at(failing_write, REAL_STAGE, lambda: OSError(28, "No space left on device"))
        monkeypatch.setattr(transaction, "stage", wrapper)
    else:  # after `failing_write` files were swapped in
        wrapper, _ = failing_once_at(failing_write, REAL_REPLACE, lambda: OSError(5, "Input/output error"))
        monkeypatch.setattr(os, "replace", wrapper)
    with pytest.raises(Refused, match="nothing was changed") as refusal:
        operations.patch(describe_package(package))
    assert isinstance(refusal.value.__cause__, OSError)
    monkeypatch.undo()
    assert tree_hashes(package.parent) == pristine
    assert not (package / ".theano-det").exists()
    assert not list(package.parent.rglob("*.theano-det-*"))


DISK_FULL_RUN = textwrap.dedent("""
    import errno, sys
    from theano_det import cli
    from theano_det.patching import transaction
    real = transaction.stage
    def stage(target, data, mode=None):
        if target.name == "opt.py":
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real(target, data, mode)
    transaction.stage = stage
    sys.exit(cli.main(sys.argv[1:]))
""")


def test_a_full_disk_is_a_clear_refusal_on_the_command_line(release_copy):
    package = release_copy("1.0.5")
    pristine = tree_hashes(package.parent)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", DISK_FULL_RUN, "patch", "--theano-dir", str(package)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "No space left on device" in done.stderr and "nothing was changed" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree_hashes(package.parent) == pristine


def test_the_write_count_above_is_the_real_one(release_copy, monkeypatch):
    package = release_copy("0.9.0")
    wrapper, calls = failing_once_at(10**6, REAL_STAGE, None)
    monkeypatch.setattr(transaction, "stage", wrapper)
    operations.patch(describe_package(package))
    assert len(calls) == WRITES_FOR_0_9_0


def test_sigterm_during_the_writes_rolls_back(release_copy, monkeypatch):
    package = release_copy("0.9.0")
    pristine = tree_hashes(package.parent)
    calls = []

    def replace(source, destination):
        REAL_REPLACE(source, destination)
        calls.append(destination)
        if len(calls) == len(FILES_OF_0_9_0) + 2:  # after the first source file was swapped in
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        operations.patch(describe_package(package))
    monkeypatch.undo()
    assert tree_hashes(package.parent) == pristine
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


KILLED_RUN = textwrap.dedent("""
    import os, sys
    from theano_det import cli
    real, writes = os.replace, []
    def replace(source, destination):
        real(source, destination)
        writes.append(destination)
        if len(writes) == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), 9)
    os.replace = replace
    sys.exit(cli.main(sys.argv[1:]))
""")


@pytest.mark.parametrize("kill_after", [len(FILES_OF_0_9_0) + 1, len(FILES_OF_0_9_0) + 2])
def test_a_killed_run_leaves_each_file_whole_and_the_state_readable(release_copy, kill_after):
    package = release_copy("0.9.0")
    originals = {path: (package / path).read_bytes() for path in FILES_OF_0_9_0}
    env = dict(os.environ, KILL_AFTER=str(kill_after), PYTHONPATH=str(ROOT))
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, "patch", "--theano-dir", str(package)],
                            env=env, capture_output=True, text=True)
    assert killed.returncode == -9

    status = run_cli("status", "--json", "--theano-dir", package)
    assert status.returncode == 1, status.stderr
    report = json.loads(status.stdout)
    assert report["interrupted"] is True
    states = {entry["path"]: entry["state"] for entry in report["files"]}
    patched = kill_after - len(FILES_OF_0_9_0) - 1  # writes: the backups, the manifest, then the files
    assert sorted(states.values()) == sorted(["patched"] * patched + ["reinstalled"] * (len(FILES_OF_0_9_0) - patched))

    assert list(package.rglob("*.theano-det-tmp"))  # the killed run's temporaries
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    assert run_cli("status", "--theano-dir", package).returncode == 0
    assert list(package.rglob("*.theano-det-tmp")) == []
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert {path: (package / path).read_bytes() for path in originals} == originals
    assert not (package / ".theano-det").exists()


def test_concurrent_patch_runs_never_interleave(release_copy):
    package = release_copy("0.9.0")
    runs = [
        subprocess.Popen([sys.executable, "-m", "theano_det", "patch", "--json", "--theano-dir", str(package)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], [err for _, err in outputs]
    changed = [json.loads(out)["changed"] for out, _ in outputs]
    assert sorted(map(len, changed)) == [0, 0, 0, len(FILES_OF_0_9_0)]  # exactly one run wrote
    assert run_cli("status", "--theano-dir", package).returncode == 0
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0


def test_a_held_lock_makes_a_second_run_wait_then_refuse(release_copy):
    package = release_copy("1.0.5")
    before = tree_hashes(package.parent)
    with transaction.locked(package, timeout=1):
        done = run_cli("patch", "--lock-timeout", "0.5", "--theano-dir", package)
    assert done.returncode == 3
    assert "another theano-det run holds the lock" in done.stderr
    assert (package / "gpuarray/opt.py").read_bytes() == (release_copy("1.0.5", "fresh") / "gpuarray/opt.py").read_bytes()
    assert {path: digest for path, digest in tree_hashes(package.parent).items()
            if ".theano-det" not in path} == before


ALTERNATING_RUNS = textwrap.dedent("""
    import contextlib, io, json, sys
    from theano_det import cli
    package, first, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    results = []
    for turn in range(rounds):
        command = ("patch", "unpatch")[(first + turn) % 2]
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            code = cli.main([command, "--theano-dir", package])
        results.append([command, code, errors.getvalue()])
    print(json.dumps(results))
""")


def test_six_runs_alternating_patch_and_unpatch_all_succeed_and_leave_the_tree_whole(tmp_path, release):
    from small_tree import leftovers, make_tree, snapshot

    package = make_tree(release("1.0.5"), tmp_path / "site")
    pristine = snapshot(package)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = [subprocess.Popen([sys.executable, "-c", ALTERNATING_RUNS, str(package), str(index % 2), "4"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for index in range(6)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0] * 6, [error for _, error in outputs]
    results = [result for output, _ in outputs for result in json.loads(output)]
    assert len(results) == 24
    assert [result for result in results if result[1] != 0] == []  # each waited for the lock and finished
    status = run_cli("status", "--json", "--theano-dir", package)
    states = {entry["state"] for entry in json.loads(status.stdout)["files"]}
    assert states in ({"patched"}, {"pristine"}), status.stderr  # whole: all patched or none
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert snapshot(package) == pristine and leftovers(tmp_path) == []
