"""The files that run inside the target interpreter: Python 3.5+, stdlib only; the legacy aliases."""

from __future__ import annotations

import subprocess
import sys

from theano_det.seeding.in_process import STARTUP_DIR

INTARGET = STARTUP_DIR.parent


def vermin(*paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        # vermin has no __main__ module; this is what its console script runs
        [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())", "--no-tips", "--violations", "-t=3.5-", *map(str, paths)],
        capture_output=True, text=True, timeout=300,
    )


def test_every_file_run_inside_the_target_is_valid_python_3_5():
    done = vermin(INTARGET)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_version_check_fails_on_code_python_3_5_cannot_run(tmp_path):
    (tmp_path / "modern.py").write_text("name = 'x'\nprint(f'{name}')\n")
    assert vermin(tmp_path).returncode != 0


def test_the_startup_files_import_only_the_standard_library():
    program = (
        "import sys, os\n"
        f"sys.path.insert(0, {str(STARTUP_DIR)!r})\n"
        "before = set(sys.modules)\n"
        "import _theano_det_rngseed, _theano_det_compat, _theano_det_legacy, _theano_det_imports\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(name for name in new if name in sys.stdlib_module_names or name.startswith('_')))\n"
        "print(sorted(name for name in new if name not in sys.stdlib_module_names and not name.startswith('_')))\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "[]"


COMPAT_PROBE = f"""
import sys, collections
sys.path.insert(0, {str(STARTUP_DIR)!r})
mine = object()
collections.Mapping = mine  # a name someone already set must stay theirs
import _theano_det_compat
added = _theano_det_compat.apply()
import collections.abc
assert collections.Mapping is mine
assert collections.Iterable is collections.abc.Iterable
assert collections.MutableSet is collections.abc.MutableSet
assert "collections.Mapping" not in added and "collections.Iterable" in added
assert _theano_det_compat.apply() == []  # nothing is missing any more
print("ok")
"""


def test_the_aliases_only_add_missing_names():
    done = subprocess.run([sys.executable, "-c", COMPAT_PROBE], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_module_imported_after_activation_keeps_its_own_loader():
    program = (
        f"import sys; sys.path.insert(0, {str(STARTUP_DIR)!r})\n"
        "import _theano_det_rngseed; _theano_det_rngseed.activate(1)\n"
        "import numpy, theano.sandbox.rng_mrg as m\n"
        "print(type(m.__loader__).__name__, type(m.__spec__.loader).__name__, numpy.random.randint(10**9))\n"
        "numpy.random.seed(1); print(numpy.random.randint(10**9))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    lines = done.stdout.split("\n")
    assert lines[0].split()[:2] == ["SourceFileLoader", "SourceFileLoader"], done.stderr
    assert lines[0].split()[2] == lines[1]  # numpy was seeded as it was imported
