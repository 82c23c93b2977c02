"""PYTHONHASHSEED: it only takes effect when the interpreter starts (DESIGN.md item 6).

Setting `os.environ["PYTHONHASHSEED"]` inside a script changes nothing for that
process, so we check the hash seed really in effect by asking a fresh
interpreter with the wanted seed to hash the same string, and compare.
"""

from __future__ import annotations

import os
import subprocess
import sys

from theano_det.errors import CannotRun, Refused
from theano_det.seeding.process import replace_process

MODES = ("warn", "reexec", "ignore")
# Set in the environment of a re-executed process: a second mismatch there is an error, not a loop.
REEXEC_MARK = "THEANO_DET_REEXEC"
PROBE = "theano-det hash seed probe"


def hash_seed_in_effect(expected: int) -> bool | None:
    """Whether this interpreter hashes with PYTHONHASHSEED=expected; None when we cannot tell."""
    if sys.flags.hash_randomization == 0:  # PYTHONHASHSEED=0 at start
        return expected == 0
    if expected == 0:
        return False
    if not sys.executable:
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-S", "-c", f"print(hash({PROBE!r}))"],
            env=dict(os.environ, PYTHONHASHSEED=str(expected)),
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() == str(hash(PROBE))


def reexec_argv() -> list:
    """The command line that starts this program again: interpreter, its options, script or -m, args."""
    why_not = reexec_refusal()
    if why_not:
        raise Refused(
            f"cannot re-execute {why_not}",
            hint="set PYTHONHASHSEED before Python starts (`theano-det run --seed N -- ...`), "
            "or call seed_all(..., hashseed='warn') or hashseed='ignore'",
        )
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":  # python -m NAME
        name = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        target = ["-m", name]
    else:
        target = [os.path.abspath(main.__file__)]
    return [sys.executable, *subprocess._args_from_interpreter_flags(), *target, *sys.argv[1:]]


def reexec_refusal() -> str | None:
    """Why this process cannot be started again as it was, or None when it can."""
    if "ipykernel" in sys.modules or "IPython" in sys.modules:
        return "a notebook or IPython session"
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return "an interactive session"
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-c":
        return "a `python -c` command"
    if argv0 in ("", "-"):
        return "a program read from standard input"
    if sys.flags.ignore_environment:
        return "an interpreter started with -E or -I (it ignores PYTHONHASHSEED)"
    if not sys.executable:
        return "an interpreter that does not know its own executable"
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    has_module = spec is not None and spec.name and spec.name != "__main__"
    if not has_module and not os.path.isfile(getattr(main, "__file__", None) or ""):
        return "a program whose script file cannot be found"
    return None


def ensure(seed: int, mode: str) -> tuple:
    """Check the hash seed for `seed` per `mode`: (in effect: True/False/None, how it stands).

    "reexec" replaces this process when the seed is not in effect; it raises
    Refused when it cannot, or when this process is already the re-executed one.
    """
    if mode == "ignore":
        return None, "not checked (hashseed='ignore')"
    in_effect = hash_seed_in_effect(seed)
    if in_effect:
        return True, f"PYTHONHASHSEED={seed} in effect"
    if in_effect is None:
        return None, f"cannot tell whether PYTHONHASHSEED={seed} is in effect (no interpreter to ask)"
    if mode == "warn":
        return False, f"PYTHONHASHSEED={seed} not in effect"
    if os.environ.get(REEXEC_MARK) == str(seed):
        raise Refused(
            f"re-executed once with PYTHONHASHSEED={seed}, and the hash seed still differs",
            hint="something resets PYTHONHASHSEED before Python starts; set it where the program is launched",
        )
    argv = reexec_argv()
    env = dict(os.environ, PYTHONHASHSEED=str(seed), **{REEXEC_MARK: str(seed)})
    try:
        replace_process(argv, env)
    except CannotRun as error:
        raise Refused(error.message) from error
