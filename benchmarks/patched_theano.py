"""A patched copy of the importable Theano, for the benchmarks that compare with it.

The copy keeps the installed Theano's patch record (.theano-det): an installed Theano
that theano-det already patched gives a copy that is patched and says so, instead of
patched files without a record, which `patch` would refuse. `--no-config`: the
benchmarks pass their settings as THEANO_FLAGS, and nothing is written outside the copy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def patched_copy(scratch: Path, who: str) -> Path:
    """Copy and patch; returns the folder to put first on PYTHONPATH. Exits with a message on failure."""
    spec = importlib.util.find_spec("theano")  # finds the package without importing (and initialising) it
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{who}: no Theano is importable here")
    copy = scratch / "site" / "theano"
    shutil.copytree(list(spec.submodule_search_locations)[0], copy, ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "theano_det", "patch", "--no-config", "--theano-dir", str(copy)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{who}: theano-det patch failed on the copy:\n{done.stderr}")
    return copy.parent
