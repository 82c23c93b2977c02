"""Count the C modules Theano compiles in a fresh process (the compile-cache patches' tests).

Plain Python (no pytest): a test calls `logging_cxx` once, then `run_probe` per process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def logging_cxx(folder: Path) -> Path:
    """g++ itself, logging each call; named g++ so that Theano keeps its g++-only flags."""
    cxx = folder / "g++"
    folder.mkdir(parents=True, exist_ok=True)
    cxx.write_text(f'#!/bin/sh\necho "$*" >> "$THEANO_DET_TEST_CXX_LOG"\nexec {shutil.which("g++")} "$@"\n')
    cxx.chmod(0o755)
    return cxx


def run_probe(program: str, package: Path, compiledir: Path, cxx: Path, log: Path, **env) -> tuple:
    """(the JSON the program prints last, its stderr, the modules g++ built into the compiledir)
    of `program` run by a fresh Python that imports the Theano of `package`."""
    log.write_text("")
    env = dict(os.environ, PYTHONPATH=str(package.parent), THEANO_DET_TEST_CXX_LOG=str(log),
               THEANO_FLAGS=f"base_compiledir={compiledir},blas.ldflags=,cxx={cxx},cmodule.warn_no_version=True",
               **env)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["theano"].startswith(str(package)), report
    # Theano's own helpers (cutils_ext, lazylinker_ext) are built once per compiledir;
    # its -march probe goes to /tmp in every process: neither is an op's module.
    outputs = [line.split(" -o ", 1)[1].split()[0] for line in log.read_text().splitlines() if " -o " in line]
    built = [path for path in outputs
             if path.startswith(str(compiledir)) and not path.endswith(("cutils_ext.so", "lazylinker_ext.so"))]
    return report, done.stderr, built


def kept_modules(compiledir: Path) -> set:
    """The compiled modules Theano keeps in its cache (an unversioned one is deleted at exit)."""
    return {path.parent.name for path in compiledir.rglob("key.pkl")}
