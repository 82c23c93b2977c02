"""The breaks that adversarial testing found in the patch engine (issue 11), one test each.

Each test reproduces the attack or accident as it was reported and checks that
nothing is lost, nothing outside the package and the chosen config file is
touched, and the answer is a message with exit code 2 or 3, never a traceback.
Most run on a small tree (released Theano 1.0.5 files and a short opt.py) to stay fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, run_cli
from small_tree import leftovers, make_tree, snapshot


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_refused(done, code, *phrases):
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr


@pytest.fixture
def tree(tmp_path, release):
    return make_tree(release("1.0.5"), tmp_path / "site")


@pytest.fixture
def patched(tree):
    assert run_cli("patch", "--theano-dir", tree).returncode == 0
    return tree


def package_files(package) -> dict:
    return {path: path.read_bytes() for path in sorted(package.rglob("*"))
            if path.is_file() and ".theano-det" not in path.parts}


# --- 1. forged manifest file keys and backups -------------------------------------------

def forge(package, victim, how):
    path = package / ".theano-det/manifest.json"
    document = json.loads(path.read_text())
    backup = package / ".theano-det/backup/gpuarray/opt.py"
    record = {"patches": ["dev20-calls"], "sha256_before": sha256(backup), "sha256_after": sha256(victim),
              "mode": 0o644, "backup": "backup/gpuarray/opt.py"}
    if how == "parent key":
        document["files"]["../../victim.txt"] = record
    elif how == "absolute key":
        document["files"][str(victim)] = record
    elif how == "dotted key":
        document["files"]["gpuarray/../../../victim.txt"] = record
    elif how == "key of a file no patch changes":  # unpatch would overwrite __init__.py
        record["sha256_after"] = sha256(package / "__init__.py")
        document["files"]["__init__.py"] = record
    elif how == "backup of another file":
        document["files"]["gpuarray/dnn.py"]["backup"] = "backup/gpuarray/opt.py"
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("how", ["parent key", "absolute key", "dotted key", "key of a file no patch changes",
                                 "backup of another file"])
def test_a_forged_file_key_or_backup_is_refused_and_nothing_is_written(patched, tmp_path, how):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    forge(patched, victim, how)
    before = snapshot(tmp_path)
    for command in ("unpatch", "status", "patch"):
        assert_refused(run_cli(command, "--theano-dir", patched), 3, "manifest", "is damaged", "files[")
    assert snapshot(tmp_path) == before
    assert victim.read_bytes() == b"precious\n"


def test_a_backup_folder_symlinked_out_of_the_tree_is_neither_trusted_nor_deleted(patched, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(patched / ".theano-det/backup/gpuarray", outside)
    shutil.rmtree(patched / ".theano-det/backup/gpuarray")
    (patched / ".theano-det/backup/gpuarray").symlink_to(outside)
    before = snapshot(outside)
    assert_refused(run_cli("unpatch", "--theano-dir", patched), 3, "left alone: its backup")
    assert snapshot(outside) == before  # unpatch removes backups: never through the link


def test_a_state_folder_symlinked_out_of_the_tree_is_never_written_through(tree, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tree / ".theano-det").symlink_to(outside)
    before = snapshot(tmp_path)
    assert_refused(run_cli("patch", "--theano-dir", tree), 3, "refusing to write", "outside the Theano package")
    assert snapshot(tmp_path) == before


# --- 2. SIGKILL during unpatch, then patch ---------------------------------------------

KILL_AFTER_BACKUP_REMOVAL = textwrap.dedent("""
    import os, sys
    from theano_det import cli
    real = os.unlink
    def unlink(path, *args, **kwargs):
        real(path, *args, **kwargs)
        if "/backup/" in str(path) and not str(path).endswith(("-kept", "-tmp")):
            os.kill(os.getpid(), 9)  # a kept link of the backup is now its only copy in the state folder
    os.unlink = unlink
    sys.exit(cli.main(sys.argv[1:]))
""")


def killed(script, *args, env=None):
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


@pytest.mark.parametrize("where", ["small tree", "release 1.0.5"])
def test_unpatch_killed_after_removing_a_backup_then_patch_keeps_every_original(tmp_path, release, release_copy,
                                                                                 where):
    package = make_tree(release("1.0.5"), tmp_path / "site") if where == "small tree" else release_copy("1.0.5")
    originals = package_files(package)
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    killed(KILL_AFTER_BACKUP_REMOVAL, "unpatch", "--theano-dir", package)
    assert list(package.rglob("*.theano-det-kept"))
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    assert_refused(run_cli("status", "--theano-dir", package), 0)
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert package_files(package) == originals
    assert leftovers(tmp_path) == [] and not (package / ".theano-det").exists()


# --- 4. lock waiters -----------------------------------------------------------------------

def test_runs_waiting_on_the_lock_never_fail_because_another_removed_it(tree):
    for _round in range(3):
        runs = [subprocess.Popen([sys.executable, "-m", "theano_det", command, "--theano-dir", str(tree)],
                                 stderr=subprocess.PIPE, text=True) for command in ("patch", "unpatch", "patch")]
        errors = [run.communicate(timeout=300)[1] for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0], errors
        assert not any("cannot lock" in error for error in errors)
    assert run_cli("unpatch", "--theano-dir", tree).returncode == 0
    assert not (tree / ".theano-det").exists()


# --- 5. the manifest deleted after patching -----------------------------------------------

def test_without_its_manifest_a_patched_tree_is_recognised_and_restored_from_its_backups(tree):
    originals = package_files(tree)
    assert run_cli("patch", "--theano-dir", tree).returncode == 0
    patched = package_files(tree)
    (tree / ".theano-det/manifest.json").unlink()
    assert_refused(run_cli("status", "--theano-dir", tree), 3,
                   "gpuarray/c_code/dnn_fwd.c: patched, but not recorded", "its original is in")
    assert_refused(run_cli("patch", "--theano-dir", tree), 3, "not patching", "theano-det unpatch")
    assert package_files(tree) == patched
    undone = run_cli("unpatch", "--theano-dir", tree)
    assert_refused(undone, 0, "gpuarray/c_code/dnn_fwd.c: restored the original", "the manifest was gone")
    assert package_files(tree) == originals and not (tree / ".theano-det").exists()


def test_without_any_state_a_patched_tree_is_never_patched_twice(tree):
    assert run_cli("patch", "--theano-dir", tree).returncode == 0
    patched = package_files(tree)
    shutil.rmtree(tree / ".theano-det")
    status = run_cli("status", "--theano-dir", tree)
    assert_refused(status, 3, "gpuarray/c_code/dnn_fwd.c: patched, but not recorded", "its original is not known",
                   "pip install --force-reinstall")
    assert "pristine" not in status.stderr
    assert_refused(run_cli("unpatch", "--theano-dir", tree), 3, "left alone", "reinstalling Theano")
    assert_refused(run_cli("patch", "--theano-dir", tree), 3, "not patching", "reinstalling Theano")
    assert run_cli("patch", "--force", "--theano-dir", tree).returncode == 0
    assert package_files(tree) == patched  # no nested `#if CUDNN_MAJOR >= 7`: each file once


# --- 6. a patched file deleted ---------------------------------------------------------------

def test_a_patched_file_that_was_deleted_is_reported(patched):
    (patched / "gpuarray/c_code/dnn_fwd.c").unlink()
    assert_refused(run_cli("status", "--theano-dir", patched), 3, "gpuarray/c_code/dnn_fwd.c: missing")
    assert_refused(run_cli("patch", "--theano-dir", patched), 3, "dnn_fwd.c is missing", "reinstall Theano")
    assert_refused(run_cli("unpatch", "--theano-dir", patched), 3,
                   "gpuarray/c_code/dnn_fwd.c: left alone: the file no longer exists")


# --- 7. leftovers after SIGKILL ----------------------------------------------------------------

KILL_AT_REPLACE = textwrap.dedent("""
    import os, sys
    from theano_det import cli
    real, count = os.replace, []
    def replace(source, destination):
        count.append(destination)
        if len(count) == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), 9)
        real(source, destination)
    os.replace = replace
    KILL_AT_UNLINK_OF = os.environ.get("KILL_AT_UNLINK_OF")
    real_unlink = os.unlink
    def unlink(path, *args, **kwargs):
        real_unlink(path, *args, **kwargs)
        if KILL_AT_UNLINK_OF and str(path).endswith(KILL_AT_UNLINK_OF):
            os.kill(os.getpid(), 9)
    os.unlink = unlink
    sys.exit(cli.main(sys.argv[1:]))
""")


def test_a_first_patch_killed_before_its_first_rename_leaves_nothing_after_the_next_run(tree, isolated_home):
    killed(KILL_AT_REPLACE, "patch", "--theano-dir", tree, env=dict(os.environ, KILL_AT="1"))
    assert [path for path in leftovers(isolated_home) if ".theanorc." in path]  # the staged config file
    assert run_cli("patch", "--theano-dir", tree).returncode == 0
    assert leftovers(isolated_home) == [] and leftovers(tree) == []


def test_kept_files_of_a_killed_unpatch_are_removed_by_the_next_run(patched, isolated_home):
    originals = {path: path.read_bytes() for path in [isolated_home / ".theanorc"]}
    env = dict(os.environ, KILL_AT="0", KILL_AT_UNLINK_OF="manifest.json")  # every other write is done
    killed(KILL_AT_REPLACE, "unpatch", "--theano-dir", patched, env=env)
    assert [path for path in leftovers(patched) if "/gpuarray/" in path]
    assert run_cli("unpatch", "--theano-dir", patched).returncode == 0
    assert leftovers(isolated_home) == [] and leftovers(patched) == []
    assert not (isolated_home / ".theanorc").exists() and originals  # theano-det had created it


# --- 8. tracebacks -------------------------------------------------------------------------------

def test_a_source_that_is_not_utf8_is_unknown_content(tree):
    opt = tree / "gpuarray/opt.py"
    opt.write_bytes(opt.read_bytes().replace(b"def local_gpua_advanced_setsubtensor", b"# caf\xe9\ndef local_gpua_advanced_setsubtensor"))
    before = snapshot(tree.parent)
    for command in (["patch"], ["status"], ["patch", "--dry-run"], ["patch", "--check"]):
        assert_refused(run_cli(*command, "--theano-dir", tree), 3, "gpuarray/opt.py", "cannot be read")
    assert snapshot(tree.parent) == before


def test_a_deeply_nested_manifest_is_refused(patched):
    (patched / ".theano-det/manifest.json").write_bytes(b"[" * 200_000)
    for command in ("status", "patch", "unpatch"):
        assert_refused(run_cli(command, "--theano-dir", patched), 3, "is damaged", "nested more than")


def test_a_huge_manifest_is_refused(patched):
    (patched / ".theano-det/manifest.json").write_bytes(b" " * (2 << 20) + b"{}")
    assert_refused(run_cli("status", "--theano-dir", patched), 3, "is damaged", "larger than")


def test_a_manifest_that_is_a_fifo_is_refused_without_hanging(patched):
    manifest = patched / ".theano-det/manifest.json"
    manifest.unlink()
    os.mkfifo(manifest)
    for command in ("status", "patch", "unpatch"):
        done = subprocess.run([sys.executable, "-m", "theano_det", command, "--theano-dir", str(patched)],
                              capture_output=True, text=True, timeout=120)
        assert_refused(done, 3, "is not a regular file")


@pytest.mark.parametrize("value", ["nan", "-1", "soon"])
def test_a_lock_timeout_that_is_not_seconds_is_a_usage_error(tree, value):
    for command in ("patch", "unpatch"):
        assert_refused(run_cli(command, "--lock-timeout", value, "--theano-dir", tree), 2, "--lock-timeout")


# --- 12. root patching someone else's installation ---------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="only root can patch an installation another user owns")
def test_what_root_creates_in_a_users_installation_belongs_to_that_user(tree, isolated_home):
    user = 4242
    for root in (tree.parent, isolated_home):
        for path in [root, *root.rglob("*")]:
            os.chown(path, user, user)
    assert run_cli("patch", "--theano-dir", tree).returncode == 0
    created = [tree / ".theano-det", *(tree / ".theano-det").rglob("*"), isolated_home / ".theanorc"]
    assert len(created) > 5
    assert {(path, path.stat().st_uid, path.stat().st_gid) for path in created} == {
        (path, user, user) for path in created}
    assert {path.stat().st_uid for path in tree.rglob("*")} == {user}
