"""Config files: only regular files, only bytes Theano can decode, only records theano-det wrote.

Issue 11, breaks 3, 9 and the config half of 1: each test reproduces the attack as it was
found on the landed code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT
from test_bad_inputs import assert_clean_refusal
from test_patch_releases import tree_hashes
from test_theanorc import REALISTIC

QUICK = 60  # seconds: a run that takes longer hangs (a FIFO read blocks forever)


def run_quickly(*args, env=None):
    """Like run_cli, but a hang fails the test instead of blocking it."""
    return subprocess.run([sys.executable, "-m", "theano_det", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=QUICK, cwd=ROOT)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- break 3: a character device or a FIFO named as the config file ------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_character_device_as_theanorc_is_refused_and_stays_a_device(release_copy, tmp_path):
    package = release_copy("1.0.5")
    fakenull = tmp_path / "fakenull"
    os.mknod(fakenull, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
    before = tree_hashes(package.parent)
    env = dict(os.environ, THEANORC=str(fakenull))
    for command in (["patch"], ["patch", "--dry-run"], ["patch", "--config-file", fakenull]):
        done = run_quickly(*command, "--theano-dir", package, env=env)
        assert_clean_refusal(done, 3, f"{fakenull} is a character device, not a regular file",
                             "nothing was changed", "--no-config")
    assert stat.S_ISCHR(os.lstat(fakenull).st_mode)
    assert tree_hashes(package.parent) == before and not (package / ".theano-det").exists()
    status = run_quickly("status", "--theano-dir", package, env=env)  # Theano reads it as empty
    assert "Traceback" not in status.stderr and f"{fakenull} is a character device" in status.stderr
    assert stat.S_ISCHR(os.lstat(fakenull).st_mode)


def test_a_fifo_as_theanorc_is_refused_at_once_without_taking_the_lock(release_copy, tmp_path):
    package = release_copy("1.0.5")
    fifo = tmp_path / "theanorc.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link-to-fifo"
    link.symlink_to(fifo)
    before = tree_hashes(package.parent)
    for rc in (fifo, link):
        env = dict(os.environ, THEANORC=str(rc))
        done = run_quickly("patch", "--theano-dir", package, "--lock-timeout", "0", env=env)
        assert_clean_refusal(done, 3, f"{rc} is a FIFO, not a regular file", "nothing was changed")
        status = run_quickly("status", "--theano-dir", package, env=env)
        assert "Traceback" not in status.stderr and f"{rc} is a FIFO" in status.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert tree_hashes(package.parent) == before and not (package / ".theano-det").exists()


def test_a_config_file_replaced_by_a_fifo_after_patching_is_left_alone_by_unpatch(release_copy, release,
                                                                                   isolated_home):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_text(REALISTIC)
    assert run_quickly("patch", "--theano-dir", package).returncode == 0
    rc.unlink()
    os.mkfifo(rc)
    done = run_quickly("unpatch", "--theano-dir", package)
    assert_clean_refusal(done, 3, f"{rc}: left alone:", "FIFO")
    assert stat.S_ISFIFO(os.lstat(rc).st_mode)
    assert (package / "gpuarray/opt.py").read_bytes() == (release("1.0.5") / "gpuarray/opt.py").read_bytes()


def recorded_config(release, tmp_path, text: bytes | None):
    """(rc, manifest, state folder) after writing our settings into rc, as patch records them."""
    from theano_det.config import configfile
    from theano_det.patching import manifest as manifests
    from theano_det.patching.transaction import Transaction

    rc, state = tmp_path / "theanorc", tmp_path / "state"
    if text is not None:
        rc.write_bytes(text)
    plan = configfile.plan_patch(release("1.0.5"), configfile.ConfigChoice(rc, "test", True))
    manifest, transaction = manifests.Manifest(), Transaction()
    configfile.record_patch(transaction, plan, manifest, state)
    configfile.write_patch(transaction, plan)
    transaction.commit()
    return rc, manifests.parse(manifest.to_bytes()), state


@pytest.mark.parametrize("replace", ["remove", "fifo", "folder"])
def test_a_recorded_config_file_that_is_gone_or_no_longer_a_file_is_left_alone(release, tmp_path, replace):
    from theano_det.config import configfile

    rc, manifest, state = recorded_config(release, tmp_path, REALISTIC.encode())
    rc.unlink()
    if replace == "fifo":
        os.mkfifo(rc)
    elif replace == "folder":
        rc.mkdir()
    (restore,) = configfile.plan_unpatch(manifest, state)
    assert not restore.needs_write
    if replace == "remove":
        assert restore.left_alone and all(reason == "the file no longer exists" for _, reason in restore.left_alone)
    else:
        assert restore.problem == f"it is {'a FIFO' if replace == 'fifo' else 'a folder'}, not a regular file; " \
                                  "theano-det reads and replaces only regular files"


# --- break 9: a byte Theano cannot decode ----------------------------------------------------------

LATIN1 = b"[global]\nfloatX = float32\n# caf\xe9 (latin-1)\n[dnn.conv]\nalgo_bwd_filter = none\n"


def test_theano_itself_cannot_read_a_latin1_byte_in_a_utf8_locale(tmp_path):
    """What Theano 1.0.5 does (configparser.py): ConfigParser.read(files), the locale's encoding."""
    rc = tmp_path / "theanorc"
    rc.write_bytes(LATIN1)
    probe = ("import configparser, sys; configparser.ConfigParser().read(sys.argv[1])")
    done = subprocess.run([sys.executable, "-c", probe, rc], capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C.UTF-8"), timeout=QUICK)
    assert "UnicodeDecodeError" in done.stderr


def test_a_latin1_byte_in_the_config_file_is_refused_by_patch_and_status_with_its_line(release_copy,
                                                                                       isolated_home):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_bytes(LATIN1)
    before = tree_hashes(package.parent)
    env = dict(os.environ, LC_ALL="C.UTF-8")
    for command in (["patch"], ["patch", "--dry-run"], ["status"]):
        done = run_quickly(*command, "--theano-dir", package, env=env)
        assert_clean_refusal(done, 3, f"{rc} line 3: byte 0xe9 is not utf-8", "Theano cannot read")
    assert rc.read_bytes() == LATIN1 and tree_hashes(package.parent) == before


def test_the_encoding_is_the_one_the_target_interpreter_reads_with(release, tmp_path):
    from theano_det.config import configfile
    from theano_det.errors import Refused

    rc = tmp_path / "theanorc"
    rc.write_bytes(LATIN1)
    package = release("1.0.5")
    choice = configfile.ConfigChoice(rc, "test", True)
    assert configfile.plan_patch(package, choice, encoding="latin-1").needs_write  # a latin-1 locale reads it
    assert configfile.plan_patch(package, choice, encoding=None).needs_write  # Python 2 reads bytes
    with pytest.raises(Refused, match="line 3: byte 0xe9 is not utf-8"):
        configfile.plan_patch(package, choice, encoding="UTF-8")


# --- break 1, config half: a forged config record ----------------------------------------------------


def forge(package: Path, victim: Path, **fields) -> None:
    """Add a config record for `victim` to the manifest, copied from the real one."""
    path = package / ".theano-det/manifest.json"
    document = json.loads(path.read_text())
    record = next(record for key, record in document["config"].items() if key != str(victim))
    forged = dict(record, path=str(victim), real_path=str(victim), **fields)
    document["config"][str(victim)] = forged
    path.write_text(json.dumps(document))


def test_a_forged_config_record_cannot_make_unpatch_delete_a_file(release_copy, isolated_home, tmp_path):
    package = release_copy("1.0.5")
    assert run_quickly("patch", "--theano-dir", package).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("important data\n")
    forge(package, victim, existed=False, backup=None, sha256_after=sha256(victim))
    manifest = (package / ".theano-det/manifest.json").read_bytes()
    patched = tree_hashes(package.parent)
    for command in (["unpatch", "--dry-run"], ["unpatch"], ["status"]):
        done = run_quickly(*command, "--theano-dir", package)
        assert_clean_refusal(done, 3, f"config record for {victim}", "sha256_after")
    assert victim.read_text() == "important data\n"
    assert (package / ".theano-det/manifest.json").read_bytes() == manifest
    assert tree_hashes(package.parent) == patched


def test_a_forged_config_record_cannot_make_unpatch_overwrite_a_file(release_copy, isolated_home, tmp_path):
    package = release_copy("1.0.5")
    (isolated_home / ".theanorc").write_text(REALISTIC)
    assert run_quickly("patch", "--theano-dir", package).returncode == 0
    victim = tmp_path / "victim.ini"
    victim.write_text("[global]\nfloatX = float32\n")
    document = json.loads((package / ".theano-det/manifest.json").read_text())
    (record,) = document["config"].values()
    # the real backup, and its hash: unpatch would copy the user's old theanorc over the victim
    forge(package, victim, sha256_after=sha256(victim))
    done = run_quickly("unpatch", "--theano-dir", package)
    assert_clean_refusal(done, 3, "backup")  # the backup belongs to another path
    forge(package, victim, sha256_after=sha256(victim),
          backup=f"config-backup/{hashlib.sha256(str(victim).encode()).hexdigest()[:16]}.theanorc")
    backup = package / ".theano-det" / json.loads(
        (package / ".theano-det/manifest.json").read_text())["config"][str(victim)]["backup"]
    backup.write_bytes((package / ".theano-det" / record["backup"]).read_bytes())
    done = run_quickly("unpatch", "--theano-dir", package)
    assert_clean_refusal(done, 3, f"config record for {victim}", "sha256_after")
    assert victim.read_text() == "[global]\nfloatX = float32\n"


RECORDS_THEANO_DET_CANNOT_HAVE_WRITTEN = [
    ("path", "relative/theanorc", "path"),
    ("real_path", "/tmp/../etc/theanorc", "real_path"),
    ("existed", "yes", "existed"),
    ("sha256_after", "0" * 63, "sha256_after"),
    ("backup", "backup/gpuarray/opt.py", "backup"),
    ("keys", [], "keys"),
    ("keys", [{"section": "client", "option": "password", "key": "client.password", "value": "x",
               "added": "", "previous": None, "previous_lines": None}], "keys"),
    ("keys", [{"section": "global", "option": "deterministic", "key": "deterministic", "value": "more",
               "added": "", "previous": "default", "previous_lines": "password = hunter2\n"}],
     "keys.previous_lines"),
    ("last_line", "a\nb", "last_line"),
]


def test_a_config_record_that_theano_det_cannot_have_written_is_refused(release_copy, isolated_home):
    package = release_copy("1.0.5")
    assert run_quickly("patch", "--theano-dir", package).returncode == 0
    path = package / ".theano-det/manifest.json"
    valid = path.read_text()
    rc = isolated_home / ".theanorc"
    before = rc.read_bytes(), tree_hashes(package.parent)
    for field, value, phrase in RECORDS_THEANO_DET_CANNOT_HAVE_WRITTEN:
        document = json.loads(valid)
        ((key, record),) = document["config"].items()
        if field == "real_path":
            document["config"] = {value: dict(record, real_path=value)}
        else:
            record[field] = value
        path.write_text(json.dumps(document))
        (filed_under,) = document["config"]
        for command in (["unpatch"], ["status"]):
            done = run_quickly(*command, "--theano-dir", package)
            assert_clean_refusal(done, 3, "manifest", f"config record for {filed_under}: {phrase} ")
        path.write_text(valid)
        assert (rc.read_bytes(), tree_hashes(package.parent)) == before, field


# --- property: whatever a config record says, unpatch writes only the recorded file and the package ---

VICTIM_FILES = {"important.txt": b"important data\n", "empty": b"", "other.ini": b"[global]\nfloatX = float32\n",
                "crlf.ini": b"[dnn.conv]\r\nalgo_bwd_filter = none\r\n"}


def outside_hashes(root: Path, package: Path, rc: Path) -> dict:
    """Every file under root except the package's sdist folder and the recorded config file."""
    return {str(path): sha256(path) for path in sorted(root.rglob("*"))
            if path.is_file() and path != rc and package.parent not in path.parents}


@pytest.fixture
def patched_world(release_copy, isolated_home, tmp_path):
    """A patched Theano 1.0.5 with a config record for ~/.theanorc, victims beside it, and a way
    to put every file the commands may write back as it was after patching."""
    from theano_det.cli import main

    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_text(REALISTIC)
    assert main(["patch", "--theano-dir", str(package)]) == 0
    victims = tmp_path / "victims"
    state = package / ".theano-det"
    document = json.loads((state / "manifest.json").read_text())
    saved = {path: path.read_bytes() for path in [rc, *[package / relative for relative in document["files"]],
                                                    *[path for path in state.rglob("*") if path.is_file()]]}

    def reset():
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(victims, ignore_errors=True)
        victims.mkdir()
        for name, data in VICTIM_FILES.items():
            (victims / name).write_bytes(data)
        for path, data in saved.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    return package, rc, victims, document, reset


def json_values():
    return st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=6)


RECORD_FIELDS = ["path", "real_path", "existed", "sha256_before", "sha256_after", "backup", "keys",
                 "sections_added", "last_line"]
KEY_FIELDS = ["section", "option", "key", "value", "previous", "previous_lines", "added"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                               HealthCheck.too_slow])
@given(data=st.data())
def test_no_config_record_makes_unpatch_touch_anything_but_the_recorded_file_and_the_package(
        patched_world, tmp_path, data):
    from theano_det.config import configfile, records
    from theano_det.patching import manifest as manifests
    from theano_det.cli import main
    from theano_det.errors import Refused

    package, rc, victims, document, reset = patched_world
    reset()
    victim_paths = [str(victims / name) for name in VICTIM_FILES]
    digests = [sha256(victims / name) for name in VICTIM_FILES] + [
        sha256(package / ".theano-det" / record["backup"]) for record in document["config"].values()]
    interesting = st.sampled_from([*victim_paths, *digests, str(rc), "../../victims/important.txt",
                                   "config-backup/../../../victims/important.txt", "backup/gpuarray/opt.py",
                                   records.config_backup_name(victim_paths[0]), ""])
    value = st.one_of(interesting, json_values(), st.booleans(), st.none())
    forged = json.loads(json.dumps(document))
    (key, record), = forged["config"].items()
    if data.draw(st.booleans(), label="aim the record at a victim"):
        victim = data.draw(st.sampled_from(victim_paths), label="victim")
        record.update(path=victim, real_path=victim, sha256_after=sha256(Path(victim)))
        key = victim
        if data.draw(st.booleans(), label="give the victim a backup"):
            record["backup"] = records.config_backup_name(victim)
            backup = package / ".theano-det" / record["backup"]
            backup.write_bytes((package / ".theano-det" / document["config"][str(rc)]["backup"]).read_bytes())
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        if data.draw(st.booleans(), label="in keys") and isinstance(record.get("keys"), list) and record["keys"]:
            change = data.draw(st.sampled_from(record["keys"]))
            if isinstance(change, dict):
                change[data.draw(st.sampled_from(KEY_FIELDS))] = data.draw(value)
        else:
            record[data.draw(st.sampled_from(RECORD_FIELDS))] = data.draw(value)
    forged["config"] = {key: record}
    (package / ".theano-det/manifest.json").write_text(json.dumps(forged))
    before = outside_hashes(tmp_path, package, rc)

    for command in (["unpatch", "--dry-run"], ["unpatch"]):
        assert main([*command, "--theano-dir", str(package)]) in (0, 3)  # no traceback: it would raise here
    assert outside_hashes(tmp_path, package, rc) == before
    try:  # what status does with config records (the rest of status plans sources: seconds per call)
        configfile.check_records(manifests.load(package))
    except Refused:
        pass
    assert outside_hashes(tmp_path, package, rc) == before
