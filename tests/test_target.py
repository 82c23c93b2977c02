"""Target selection and description, shared by every command."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from theano_det.target import LOCATOR, describe_package, locate

EXPECTED = {
    "0.7.0": ("Theano", "0.7.0", ["sandbox/cuda", "sandbox/gpuarray"]),
    "0.8.2": ("Theano", "0.8.2", ["sandbox/cuda", "sandbox/gpuarray"]),
    "0.9.0": ("Theano", "0.9.0", ["sandbox/cuda", "gpuarray"]),
    "1.0.0": ("Theano", "1.0.0", ["gpuarray"]),
    "1.0.5": ("Theano", "1.0.5", ["gpuarray"]),
    "pymc-1.1.2": ("Theano-PyMC", "1.1.2", ["gpuarray"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_release_folder_is_described_from_its_files(release, name):
    target = describe_package(release(name))
    assert (target.distribution, target.version, list(target.backends)) == EXPECTED[name]
    assert target.python is None


def test_the_default_target_is_the_theano_of_the_running_interpreter():
    target = locate()
    import theano  # the test environment's own Theano 1.0.5

    assert target.package_dir.samefile(theano.__path__[0])
    assert (target.distribution, target.version) == ("Theano", "1.0.5")
    assert target.python == sys.executable


def test_python_option_asks_that_interpreter_without_importing_theano(tmp_path):
    marker = tmp_path / "imported"
    site = tmp_path / "site"
    (site / "theano").mkdir(parents=True)
    # Importing this theano would leave a marker file behind: the locator must not do it.
    (site / "theano" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (site / "theano" / "gpuarray").mkdir()
    (site / "theano" / "gpuarray" / "opt.py").write_text("")
    done = subprocess.run([sys.executable, str(LOCATOR)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["theano_dir"] == str(site / "theano")
    assert not marker.exists()


def test_status_json_reports_the_target():
    done = run_cli("status", "--json")
    document = json.loads(done.stdout)
    assert document["target"]["distribution"] == "Theano"
    assert document["target"]["version"] == "1.0.5"
    assert document["target"]["backends"] == ["gpuarray"]
    assert document["target"]["python"] == sys.executable
    assert done.returncode == document["exit_code"]


def test_in_target_files_run_on_old_pythons():
    """Files run by the target interpreter must stay valid Python 3.5 (the locator also 2.7)."""
    vermin = Path(sys.executable).parent / "vermin"  # the package has no __main__
    done = subprocess.run([str(vermin), "-t=2.7-", "-t=3.5-", "--no-tips", "--violations",
                           str(LOCATOR)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wheel_ships_the_patches_and_in_target_files(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("theano_det-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "theano_det/patches/dev20-calls.toml" in names
    assert "theano_det/patches/known-files.json" in names  # status and patch read it
    assert "theano_det/intarget/locate_theano.py" in names
    assert "theano_det/cli.py" in names
