"""Wall-clock time of theano-det's commands on a copy of an installed Theano.

The Theano importable by this interpreter (Theano 1.0.5 in `make venv`'s .venv) is
copied into a temporary folder with its install metadata, and each round runs, as a
user would (a fresh `theano-det` process each time, config file in a temporary
THEANORC):

    status (pristine), patch --check, patch --dry-run, patch, status (patched),
    patch (again: nothing to do), unpatch

It prints the minimum and the median wall-clock time over the rounds of each command
(the minimum is the figure that noise on a shared machine inflates least) and the
minimum CPU time (user + system, which other processes inflate less still), and with
--json one JSON document. The installed Theano is never touched.

usage: python benchmarks/command_times.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = [
    ("status (pristine)", ["status"], 1),
    ("patch --check", ["patch", "--check"], 1),
    ("patch --dry-run", ["patch", "--dry-run"], 0),
    ("patch", ["patch"], 0),
    ("status (patched)", ["status"], 0),
    ("patch (nothing to do)", ["patch"], 0),
    ("unpatch", ["unpatch"], 0),
]


def installed_theano() -> Path:
    done = subprocess.run([sys.executable, "-c", "import theano, os; print(os.path.dirname(theano.__file__))"],
                          capture_output=True, text=True, env=dict(os.environ, THEANO_FLAGS="blas.ldflags="))
    if done.returncode != 0:
        sys.exit(f"no importable Theano: {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def copy_theano(package: Path, into: Path) -> Path:
    site = into / "site-packages"
    shutil.copytree(package, site / "theano", ignore=shutil.ignore_patterns("__pycache__"))
    for metadata in package.parent.glob("[Tt]heano-*-info"):
        shutil.copytree(metadata, site / metadata.name)
    return site / "theano"


def timed(args: list, env: dict, expected: int) -> tuple:
    """(wall-clock seconds, CPU seconds of the process: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "theano_det", *args], capture_output=True, text=True, env=env,
                          cwd=env["HOME"])  # not a source checkout: the theano_det on the path
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expected:
        sys.exit(f"theano-det {' '.join(args)} exited {done.returncode}, not {expected}:\n{done.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every command (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)
    times = {name: [] for name, _, _ in STEPS}
    with tempfile.TemporaryDirectory(prefix="theano-det-bench-") as work:
        package = copy_theano(installed_theano(), Path(work))
        env = dict(os.environ, THEANORC=str(Path(work) / "theanorc"), HOME=work)
        env.pop("THEANO_FLAGS", None)
        # as installed: bytecode is written once and read afterwards (a session may switch that off)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for _ in range(args.rounds):
            for name, command, expected in STEPS:
                times[name].append(timed([*command, "--theano-dir", str(package)], env, expected))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    baseline = time.perf_counter() - start
    figures = {name: {"min_s": round(min(wall for wall, _ in values), 3),
                      "median_s": round(statistics.median(wall for wall, _ in values), 3),
                      "min_cpu_s": round(min(cpu for _, cpu in values), 3)}
               for name, values in times.items()}
    if args.json:
        print(json.dumps({"rounds": args.rounds, "python_c_pass_s": round(baseline, 3), "commands": figures},
                         indent=1))
    else:
        print(f"{args.rounds} round(s); `python -c pass`: {baseline:.3f} s")
        for name, figure in figures.items():
            print(f"{name:24} min {figure['min_s']:6.3f} s   median {figure['median_s']:6.3f} s   "
                  f"CPU min {figure['min_cpu_s']:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
