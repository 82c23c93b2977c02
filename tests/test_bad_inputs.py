"""Bad inputs: a clear message, the documented exit code, and nothing changed."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli
from test_patch_releases import tree_hashes

FOLK_EDIT = (b"GpuAdvancedIncSubtensor1_dev20(\n            set_instead_of_inc",
             b"GpuAdvancedIncSubtensor1(\n            set_instead_of_inc")


def assert_clean_refusal(done, code, *phrases):
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    for phrase in phrases:
        assert phrase in done.stderr


def test_a_hand_edited_file_is_refused_and_left_alone(release_copy):
    package = release_copy("1.0.5")
    opt = package / "gpuarray/opt.py"
    opt.write_bytes(opt.read_bytes().replace(*FOLK_EDIT, 1))  # the folk recipe, done on one of two calls
    before = tree_hashes(package.parent)
    for command in (["patch"], ["patch", "--dry-run"], ["patch", "--check"]):
        done = run_cli(*command, "--theano-dir", package)
        assert_clean_refusal(done, 3, "gpuarray/opt.py is unexpected",
                             "found 1 site(s) to change, expected 2", "--force")
    assert_clean_refusal(run_cli("status", "--theano-dir", package), 3, "not as expected")
    assert tree_hashes(package.parent) == before


def test_force_shows_and_patches_the_sites_that_exist(release_copy):
    package = release_copy("1.0.5")
    opt = package / "gpuarray/opt.py"
    edited = opt.read_bytes().replace(*FOLK_EDIT, 1)
    opt.write_bytes(edited)
    done = run_cli("patch", "--force", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert "--force patches these sites:" in done.stderr and "line 1136:" in done.stderr
    assert b"_dev20(" not in opt.read_bytes()
    assert run_cli("status", "--theano-dir", package).returncode == 0
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert opt.read_bytes() == edited  # the file as it was before --force, hand edit included


def test_a_file_changed_after_patching_is_reported_and_left_alone_by_unpatch(release_copy):
    package = release_copy("0.9.0")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    opt = package / "gpuarray/opt.py"
    changed = opt.read_bytes() + b"# a local change\n"
    opt.write_bytes(changed)
    assert_clean_refusal(run_cli("status", "--theano-dir", package), 3, "modified by someone else")
    assert_clean_refusal(run_cli("patch", "--theano-dir", package), 3, "changed by someone else")
    undone = run_cli("unpatch", "--theano-dir", package)
    assert_clean_refusal(undone, 3, "gpuarray/opt.py: left alone: changed by someone else")
    assert "sandbox/cuda/opt.py: restored the original" in undone.stderr
    assert opt.read_bytes() == changed
    status = json.loads(run_cli("status", "--json", "--theano-dir", package).stdout)
    assert {f["path"]: f["state"] for f in status["files"]} == {
        "sandbox/cuda/opt.py": "pristine", "gpuarray/opt.py": "modified", "scan_module/scan_perform.c": "pristine",
        "gof/op.py": "pristine"}


def test_a_reinstall_after_patching_is_recognised(release_copy, release):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    shutil.copyfile(release("1.0.5") / "gpuarray/opt.py", package / "gpuarray/opt.py")  # like pip would
    status = run_cli("status", "--theano-dir", package)
    assert_clean_refusal(status, 1, "reinstalled since patching")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    assert run_cli("status", "--theano-dir", package).returncode == 0


def test_an_unknown_layout_is_refused(tmp_path):
    package = tmp_path / "theano"
    package.mkdir()
    (package / "__init__.py").write_text("__version__ = '9.9'\n")
    (package / "tensor.py").write_text("x = 1\n")
    for command in ("patch", "status", "unpatch"):
        done = run_cli(command, "--theano-dir", package)
        if command == "unpatch":
            assert done.returncode == 0 and "nothing to undo" in done.stderr
        else:
            assert_clean_refusal(done, 3, "unknown Theano layout", "gpuarray/opt.py")
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "tensor.py"]


def test_a_folder_that_is_not_a_theano_package_cannot_be_used(tmp_path):
    assert_clean_refusal(run_cli("status", "--theano-dir", tmp_path), 4, "is not a theano package folder")


@pytest.mark.parametrize("damage", [b"{not json", b'{"format": 99, "state": "applied", "files": {}}',
                                    b'{"format": 1, "state": "applied", "files": {"x": {}}}',
                                    b'{"format": 1, "state": "applied", "files": []}'])
def test_a_damaged_manifest_is_refused_by_every_command(release_copy, damage):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    (package / ".theano-det/manifest.json").write_bytes(damage)
    before = tree_hashes(package.parent)
    for command in ("patch", "unpatch", "status"):
        assert_clean_refusal(run_cli(command, "--theano-dir", package), 3, "manifest", "is damaged")
    assert tree_hashes(package.parent) == before


def run_on_read_only(folder, *args):
    """Run the CLI with `folder` read-only: chmod for a normal user, a read-only mount for root."""
    command = [sys.executable, "-m", "theano_det", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, env=env)
        finally:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o755)
    # root ignores file modes: give it a private mount namespace with a read-only bind mount
    script = f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))} && exec {shlex.join(command)}"
    return subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, env=env)


def test_a_read_only_installation_is_refused_with_a_hint(release_copy):
    package = release_copy("1.0.5")
    before = tree_hashes(package.parent)
    done = run_on_read_only(package.parent, "patch", "--theano-dir", package)
    assert_clean_refusal(done, 3, "nothing was changed", "hint:")
    assert tree_hashes(package.parent) == before
    status = run_on_read_only(package.parent, "status", "--theano-dir", package)
    assert status.returncode == 1, status.stderr  # reading needs no write access


def test_a_read_only_patched_installation_cannot_be_unpatched_and_stays_patched(release_copy):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--theano-dir", package).returncode == 0
    before = tree_hashes(package.parent)
    done = run_on_read_only(package.parent, "unpatch", "--theano-dir", package)
    assert_clean_refusal(done, 3, "nothing was changed")
    assert tree_hashes(package.parent) == before


def test_usage_errors_exit_2(release_copy):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--python", sys.executable, "--theano-dir", package).returncode == 2
    assert run_cli("patch", "--dry-run", "--check", "--theano-dir", package).returncode == 2
    assert run_cli("patch", "--theano-dir", package / "missing").returncode == 2
    assert run_cli("frobnicate").returncode == 2


@pytest.mark.parametrize("damage", ["altered", "missing"])
def test_a_damaged_backup_is_reported_and_the_patched_file_kept(release_copy, damage):
    package = release_copy("1.0.5")
    assert run_cli("patch", "--no-compat", "--no-config", "--theano-dir", package).returncode == 0
    backup = package / ".theano-det/backup/gpuarray/opt.py"
    if damage == "altered":
        backup.write_bytes(backup.read_bytes() + b"# not the original\n")
    else:
        backup.unlink()
    before = tree_hashes(package.parent)
    assert_clean_refusal(run_cli("status", "--theano-dir", package), 3, "the backup is damaged")
    undone = run_cli("unpatch", "--theano-dir", package)
    assert_clean_refusal(undone, 3, "gpuarray/opt.py: left alone: its backup", "is missing or damaged")
    assert tree_hashes(package.parent) == before
