"""`patch` writes the deterministic settings into Theano's config file; `unpatch` and `status`."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import run_cli
from test_bad_inputs import assert_clean_refusal, run_on_read_only
from test_patch_releases import tree_hashes
from test_theanorc import REALISTIC, config_files
from theano_det.config import configfile
from theano_det.patching import manifest as manifests
from theano_det.patching.manifest import Manifest
from theano_det.patching.transaction import Transaction

ORIGINAL_LINE = "algo_bwd_filter = none"


def rc_values(path: Path) -> dict:
    parser = configparser.RawConfigParser()
    parser.read(path)
    return {f"{section}.{option}": parser.get(section, option)
            for section in parser.sections() for option in parser.options(section)}


def patched_ok(*args, env=None):
    done = run_cli("patch", *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.parametrize("name, expected", [
    ("0.7.0", {"global.optimizer_excluding": "local_pool_dnn_grad:local_pool_dnn_grad_stride"}),
    ("0.8.2", {"dnn.conv.algo_bwd_filter": "deterministic", "dnn.conv.algo_bwd_data": "deterministic",
               "global.optimizer_excluding": "local_pool_dnn_grad:local_pool_dnn_grad_stride"}),
    ("pymc-1.1.2", {"dnn__conv.algo_bwd_filter": "deterministic", "dnn__conv.algo_bwd_data": "deterministic",
                    "global.deterministic": "more",
                    "global.optimizer_excluding": "local_gpua_pool_dnn_grad_stride"}),
])
def test_settings_are_chosen_by_what_the_release_source_supports(release_copy, tmp_path, name, expected):
    package = release_copy(name)
    rc = tmp_path / "theanorc"
    patched_ok("--theano-dir", package, "--config-file", rc, env=dict(os.environ, THEANORC=str(rc)))
    assert rc_values(rc) == expected  # 0.8.2: no `deterministic`; nobody gets dnn.conv.algo_bwd
    assert run_cli("status", "--theano-dir", package, env=dict(os.environ, THEANORC=str(rc))).returncode == 0


@pytest.mark.slow
def test_theano_reads_the_patched_file_and_unpatch_gives_it_back(release_copy, isolated_home):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    original = REALISTIC.replace("device = cuda0", "device = cpu").encode()  # this Theano has no GPU here
    rc.write_bytes(original)
    done = patched_ok("--theano-dir", package)  # THEANORC unset: ~/.theanorc
    assert f"{rc}: set [dnn.conv] algo_bwd_filter = deterministic (was 'none')" in done.stderr
    new_lines = rc.read_text().splitlines()
    remaining = iter(new_lines)
    assert all(line in remaining for line in original.decode().splitlines() if line != ORIGINAL_LINE)

    probe = ("import theano; c = theano.config; print(c.dnn.conv.algo_bwd_filter, c.dnn.conv.algo_bwd_data, "
             "c.deterministic, c.floatX, c.optimizer_excluding)")
    env = dict(os.environ, THEANORC=str(rc))  # THEANO_FLAGS: the conftest's, no determinism key
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=600)
    assert shown.returncode == 0, shown.stderr
    bwd_filter, bwd_data, deterministic, float_x, excluding = shown.stdout.split()
    assert (bwd_filter, bwd_data, deterministic, float_x) == ("deterministic", "deterministic", "more", "float32")
    assert "local_gpua_pool_dnn_grad_stride" in excluding.split(":")

    assert run_cli("status", "--theano-dir", package, env=env).returncode == 0
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert rc.read_bytes() == original
    assert not (package / ".theano-det").exists()


def test_status_reports_theano_flags_and_files_to_the_right_overriding_ours(release_copy, tmp_path):
    package = release_copy("1.0.5")
    ours, right = tmp_path / "ours.rc", tmp_path / "right.rc"
    right.write_text("[dnn.conv]\nalgo_bwd_data = time_once\n")
    env = dict(os.environ, THEANORC=f"{ours}{os.pathsep}{right}")
    patched_ok("--theano-dir", package, "--config-file", ours, env=env)
    status = run_cli("status", "--json", "--theano-dir", package, env=env)
    assert status.returncode == 1, status.stderr
    settings_by_name = {s["name"]: s for s in json.loads(status.stdout)["config_status"]["settings"]}
    data = settings_by_name["dnn.conv.algo_bwd_data"]
    assert (data["value"], data["source"], data["overridden_by"], data["hides"]) == (
        "time_once", str(right), str(right), str(ours))
    assert settings_by_name["dnn.conv.algo_bwd_filter"]["source"] == str(ours)

    right.unlink()
    flags = os.environ["THEANO_FLAGS"] + ",dnn.conv.algo_bwd_filter=none"
    status = run_cli("status", "--theano-dir", package, env=dict(env, THEANO_FLAGS=flags))
    assert status.returncode == 1
    assert (f"warning: config: dnn.conv.algo_bwd_filter = none from THEANO_FLAGS: non-deterministic; "
            f"it overrides the deterministic value in {ours}") in status.stderr
    assert "3-D convolution backward-filter has no deterministic cuDNN algorithm" in status.stderr
    assert run_cli("status", "--theano-dir", package, env=env).returncode == 0

    ours.write_text(ours.read_text() + "[broken\n")  # Theano itself would fail to import now
    status = run_cli("status", "--theano-dir", package, env=env)
    assert_clean_refusal(status, 3, f"{ours} has a syntax error, line")


def test_dry_run_shows_the_config_diff_and_writes_nothing(release_copy, isolated_home):
    package = release_copy("1.0.5")
    before = tree_hashes(package.parent)
    done = run_cli("patch", "--dry-run", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    rc = isolated_home / ".theanorc"
    assert f"--- /dev/null\n+++ {rc}\n" in done.stdout
    assert "+[dnn.conv]\n+algo_bwd_filter = deterministic\n" in done.stdout
    assert "+optimizer_excluding = local_gpua_pool_dnn_grad_stride\n" in done.stdout
    assert not rc.exists() and tree_hashes(package.parent) == before
    check = run_cli("patch", "--check", "--no-config", "--theano-dir", package)
    assert check.returncode == 1 and not rc.exists()


def test_no_config_leaves_the_files_alone_and_status_says_what_is_missing(release_copy, isolated_home):
    package = release_copy("0.8.2")
    patched_ok("--no-config", "--theano-dir", package)
    assert not (isolated_home / ".theanorc").exists()
    status = run_cli("status", "--theano-dir", package)
    assert status.returncode == 1
    assert "dnn.conv.algo_bwd_filter = none from Theano's default: non-deterministic" in status.stderr
    check = run_cli("patch", "--check", "--theano-dir", package)  # the sources are done, the config is not
    assert check.returncode == 1
    assert run_cli("patch", "--no-config", "--config-file", "x", "--theano-dir", package).returncode == 2


def test_the_right_most_theanorc_file_is_created_and_removed_again(release_copy, tmp_path):
    package = release_copy("0.8.2")
    left, right = tmp_path / "left.rc", tmp_path / "missing.rc"
    left.write_text("[global]\nfloatX = float32\n")
    env = dict(os.environ, THEANORC=f"{left}{os.pathsep}{right}")
    done = patched_ok("--theano-dir", package, env=env)
    assert f"{right} does not exist: theano-det creates it" in done.stderr
    assert left.read_text() == "[global]\nfloatX = float32\n"
    assert rc_values(right)["dnn.conv.algo_bwd_data"] == "deterministic"
    assert run_cli("unpatch", "--theano-dir", package, env=env).returncode == 0
    assert not right.exists()


def test_theanorc_naming_no_file_is_refused(release_copy):
    package = release_copy("1.0.5")
    done = run_cli("patch", "--theano-dir", package, env=dict(os.environ, THEANORC=""))
    assert_clean_refusal(done, 3, "THEANORC is set but names no file", "--no-config")


@pytest.mark.parametrize("content, phrase", [
    (b"[global]\nfloatX = float32\nthis is not a setting\n", "has a syntax error, line 3: cannot parse"),
    (b"device = cuda\n[global]\n", "has a syntax error, line 1: a setting before any [section] header"),
])
def test_a_config_file_with_a_syntax_error_is_refused_and_nothing_changes(release_copy, isolated_home,
                                                                          content, phrase):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_bytes(content)
    before = tree_hashes(package.parent)
    for command in (["patch"], ["patch", "--dry-run"]):
        assert_clean_refusal(run_cli(*command, "--theano-dir", package), 3, f"{rc} {phrase}",
                             "nothing was changed", "hint:")
    assert rc.read_bytes() == content and tree_hashes(package.parent) == before


def test_a_read_only_config_file_is_refused_and_nothing_changes(release_copy, isolated_home):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_bytes(b"[global]\nfloatX = float32\n")
    rc.chmod(0o444)
    before = tree_hashes(package.parent)
    assert_clean_refusal(run_cli("patch", "--theano-dir", package), 3, f"{rc} is read-only", "--no-config")
    assert rc.read_bytes() == b"[global]\nfloatX = float32\n" and tree_hashes(package.parent) == before
    assert (rc.stat().st_mode & 0o777) == 0o444


def test_a_config_file_in_an_unwritable_folder_is_refused(release_copy, tmp_path):
    package = release_copy("1.0.5")
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "theanorc").write_bytes(b"[global]\nfloatX = float32\n")
    before = tree_hashes(package.parent)
    done = run_on_read_only(folder, "patch", "--theano-dir", package, "--config-file", folder / "theanorc")
    assert_clean_refusal(done, 3, "nothing was changed")
    assert (folder / "theanorc").read_bytes() == b"[global]\nfloatX = float32\n"
    assert tree_hashes(package.parent) == before


def test_a_symlinked_crlf_theanorc_with_percent_signs(release_copy, isolated_home, tmp_path):
    package = release_copy("1.0.5")
    real = tmp_path / "dotfiles" / "theanorc"
    real.parent.mkdir()
    original = REALISTIC.replace("\n", "\r\n").encode() + b"[gcc]\r\ncxxflags = -O3 %(HOME)s 100%%\r\n"
    real.write_bytes(original)
    link = isolated_home / ".theanorc"
    link.symlink_to(real)
    patched_ok("--theano-dir", package)
    assert link.is_symlink() and os.readlink(link) == str(real)
    edited = real.read_bytes()
    assert b"\r\nalgo_bwd_data = deterministic\r\n" in edited and b"\n" not in edited.replace(b"\r\n", b"")
    assert b"cxxflags = -O3 %(HOME)s 100%%\r\n" in edited
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert link.is_symlink() and real.read_bytes() == original


def test_unpatch_after_the_user_edited_the_file_restores_our_settings_only(release_copy, isolated_home):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_text(REALISTIC)
    patched_ok("--theano-dir", package)
    again = patched_ok("--theano-dir", package)
    assert "the deterministic settings are already there" in again.stderr
    rc.write_text(rc.read_text().replace("algo_bwd_data = deterministic", "algo_bwd_data = fft_tiling")
                  + "[lasagne]\nrandom_seed = 1\n")
    done = run_cli("unpatch", "--theano-dir", package)
    assert done.returncode == 0, done.stderr
    assert "changed since theano-det patched it: restored what our settings replaced, nothing else" in done.stderr
    assert "dnn.conv.algo_bwd_data left as it is: changed since theano-det set it (now 'fft_tiling')" in done.stderr
    values = rc_values(rc)
    assert values["dnn.conv.algo_bwd_filter"] == "none" and values["dnn.conv.algo_bwd_data"] == "fft_tiling"
    assert values["lasagne.random_seed"] == "1"
    assert "global.deterministic" not in values and "global.optimizer_excluding" not in values


def test_a_config_file_shared_by_two_installations(release_copy, isolated_home):
    newer, older = release_copy("1.0.5", "a"), release_copy("0.9.0", "b")
    rc = isolated_home / ".theanorc"
    rc.write_text(REALISTIC)
    patched_ok("--theano-dir", newer)
    patched_ok("--theano-dir", older)  # adds the old backends' pool optimizers to the same line
    assert rc_values(rc)["global.optimizer_excluding"] == (
        "local_gpua_pool_dnn_grad_stride:local_pool_dnn_grad:local_pool_dnn_grad_stride")
    assert run_cli("status", "--theano-dir", older).returncode == 0
    assert run_cli("unpatch", "--theano-dir", newer).returncode == 0
    assert rc_values(rc)["global.optimizer_excluding"] == "local_pool_dnn_grad:local_pool_dnn_grad_stride"
    status = run_cli("status", "--theano-dir", older)  # the shared settings went with the first unpatch
    assert status.returncode == 1 and "dnn.conv.algo_bwd_filter = none" in status.stderr
    assert run_cli("unpatch", "--theano-dir", older).returncode == 0
    assert rc.read_text() == REALISTIC


def test_json_reports_the_config_change_and_its_undo(release_copy, isolated_home):
    package = release_copy("1.0.5")
    done = run_cli("patch", "--json", "--theano-dir", package)
    config = json.loads(done.stdout)["config"]
    assert config["path"] == str(isolated_home / ".theanorc") and config["would_change"]
    assert [s["key"] for s in config["settings"]] == [
        "dnn.conv.algo_bwd_filter", "dnn.conv.algo_bwd_data", "deterministic", "optimizer_excluding"]
    manifest = manifests.load(package)
    assert list(manifest.config) == [str(isolated_home / ".theanorc")]
    undone = json.loads(run_cli("unpatch", "--json", "--theano-dir", package).stdout)
    assert undone["config_restores"][0]["exact"] is True


def test_a_damaged_config_record_in_the_manifest_is_refused(release_copy):
    package = release_copy("1.0.5")
    patched_ok("--theano-dir", package)
    path = package / ".theano-det/manifest.json"
    document = json.loads(path.read_text())
    record = next(iter(document["config"].values()))
    record["backup"] = "../../outside"
    path.write_text(json.dumps(document))
    assert_clean_refusal(run_cli("unpatch", "--theano-dir", package), 3, "manifest", "is damaged")


# --- property: the config half of patch then unpatch, through manifest and transaction ----------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=config_files(), created=st.booleans())
def test_patch_then_unpatch_of_the_config_file_returns_the_original_bytes(release, text, created):
    package = release("pymc-1.1.2")  # read only: its source says which settings to write
    with tempfile.TemporaryDirectory() as folder:
        rc, state = Path(folder) / "theanorc", Path(folder) / "state"
        if not created:
            rc.write_bytes(text.encode())
        choice = configfile.ConfigChoice(rc, "test", True)
        plan = configfile.plan_patch(package, choice)
        manifest, transaction = Manifest(), Transaction()
        configfile.record_patch(transaction, plan, manifest, state)
        configfile.write_patch(transaction, plan)
        transaction.commit()
        manifest = manifests.parse(manifest.to_bytes())  # as unpatch reads it
        restores = configfile.plan_unpatch(manifest, state)
        transaction = Transaction()
        configfile.stage_unpatch(transaction, restores, manifest, state)
        transaction.commit()
        assert (rc.read_bytes() == text.encode()) if not created else not rc.exists()
        assert manifest.config == {}


def test_a_read_only_config_file_that_already_holds_the_settings_is_fine(release, tmp_path):
    package = release("1.0.5")
    rc = tmp_path / "theanorc"
    rc.write_text("[global]\ndeterministic = more\noptimizer_excluding = local_gpua_pool_dnn_grad_stride\n"
                  "[dnn.conv]\nalgo_bwd_filter = deterministic\nalgo_bwd_data = deterministic\n")
    rc.chmod(0o444)
    plan = configfile.plan_patch(package, configfile.ConfigChoice(rc, "test", True))
    assert not plan.needs_write and plan.edit.keys == []


def test_unpatch_leaves_a_broken_config_file_alone_and_can_finish_later(release_copy, isolated_home):
    package = release_copy("1.0.5")
    rc = isolated_home / ".theanorc"
    rc.write_text(REALISTIC)
    original_opt = (package / "gpuarray/opt.py").read_bytes()
    patched_ok("--theano-dir", package)
    patched = rc.read_text()
    rc.write_text(patched + "[broken\n")
    done = run_cli("unpatch", "--theano-dir", package)
    assert_clean_refusal(done, 3, f"{rc}: left alone: {rc} has a syntax error, line")
    assert (package / "gpuarray/opt.py").read_bytes() == original_opt  # the sources are restored
    assert rc.read_text() == patched + "[broken\n"
    rc.write_text(patched)
    rc.chmod(0o444)
    assert_clean_refusal(run_cli("unpatch", "--theano-dir", package), 3, "it is read-only")
    rc.chmod(0o644)
    assert run_cli("unpatch", "--theano-dir", package).returncode == 0
    assert rc.read_text() == REALISTIC and not (package / ".theano-det").exists()


def test_a_config_file_in_a_missing_folder_or_a_folder_path_is_refused(release, tmp_path):
    from theano_det.errors import Refused

    package = release("1.0.5")
    with pytest.raises(Refused, match="the folder .*missing does not exist"):
        configfile.plan_patch(package, configfile.ConfigChoice(tmp_path / "missing" / "rc", "test", True))
    with pytest.raises(Refused, match="is a folder, not a config file"):
        configfile.plan_patch(package, configfile.ConfigChoice(tmp_path, "test", True))


def test_the_config_file_is_chosen_as_theano_reads_them(tmp_path, isolated_home):
    assert configfile.choose({}).path == isolated_home / ".theanorc"
    env = {"THEANORC": f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}{os.pathsep}"}
    assert configfile.choose(env).path == tmp_path / "b"  # an empty entry names nothing
    choice = configfile.choose(env, str(tmp_path / "c"))
    assert choice.path == tmp_path / "c" and not choice.read_by_theano
    assert configfile.choose(env, str(tmp_path / "a")).read_by_theano
