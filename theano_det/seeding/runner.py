"""`theano-det run`: the environment that makes an unmodified command reproducible.

- PYTHONHASHSEED, set before the interpreter starts (the only time it counts);
- the deterministic Theano settings of the target (detsettings.py) added to
  THEANO_FLAGS, after the user's own flags (Theano keeps the last value of a key);
- the start-up bootstrap (intarget/startup/) first on PYTHONPATH: Python imports
  its sitecustomize.py, which seeds `random`, numpy and every Theano stream as
  it is made, restores legacy aliases, then runs the user's own sitecustomize.

The CLI then replaces itself with the command (process.replace_process).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

from theano_det.config import detsettings
from theano_det.config import effective_config
from theano_det.errors import CannotRun
from theano_det.seeding.in_process import STARTUP_DIR, check_seed
from theano_det.target import Target, locate

SEED_VARIABLE = "THEANO_DET_SEED"  # read by intarget/startup/sitecustomize.py
COMPAT_VARIABLE = "THEANO_DET_COMPAT"
PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?[mw]?(\.exe)?", re.IGNORECASE)


@dataclass
class RunPlan:
    argv: list  # the command as given (its program is looked up on the PATH of env)
    env: dict
    target: Target | None = None  # whose Theano the flags were computed for
    flags: dict = field(default_factory=dict)  # what we put in THEANO_FLAGS
    notes: list = field(default_factory=list)  # what the user should know, one line each


def plan(command, seed: int, python: str | None = None, set_flags: bool = True,
         compat: bool = True, environ: dict | None = None) -> RunPlan:
    seed = check_seed(seed)
    env = dict(os.environ if environ is None else environ)
    program = shutil.which(command[0], path=env.get("PATH", os.defpath))
    if program is None:
        raise CannotRun(f"command not found: {command[0]}",
                        hint="give the program's path, or a name found on PATH")
    result = RunPlan([command[0], *command[1:]], env)
    env["PYTHONHASHSEED"] = str(seed)
    env[SEED_VARIABLE] = str(seed)
    env[COMPAT_VARIABLE] = "1" if compat else "0"
    env["PYTHONPATH"] = with_startup_dir(env.get("PYTHONPATH", ""))
    if set_flags:
        add_theano_flags(result, program, python)
    return result


def with_startup_dir(pythonpath: str) -> str:
    """The start-up folder first, then the user's entries exactly as given.

    An empty entry means the current folder, so it is kept; an empty PYTHONPATH has
    no entries at all. A PYTHONPATH that already starts with our folder (run inside
    run) is left as it is.
    """
    startup = str(STARTUP_DIR)
    if not pythonpath:
        return startup
    if pythonpath == startup or pythonpath.startswith(startup + os.pathsep):
        return pythonpath
    return startup + os.pathsep + pythonpath


def is_python(program: str) -> bool:
    return bool(PYTHON_NAME.fullmatch(os.path.basename(program)))


def add_theano_flags(result: RunPlan, program: str, python: str | None) -> None:
    """Flags for the Theano of --python, else of the command's interpreter, else of ours."""
    if python is not None:
        if is_python(program) and os.path.abspath(program) != os.path.abspath(shutil.which(python) or python):
            result.notes.append(
                f"the Theano settings are for the Theano of {python}, but the command runs {program}")
        result.target = locate(python=python)  # chosen by the user: no Theano there is an error
    else:
        try:
            result.target = locate(python=program if is_python(program) else None)
        except CannotRun as error:
            result.notes.append(f"{error.message}: THEANO_FLAGS left as it was")
            return
    ours = detsettings.deterministic_flags(result.target)
    user = result.env.get("THEANO_FLAGS", "")
    result.env["THEANO_FLAGS"], result.flags, contradictions = merge_flags(user, ours)
    result.notes += contradictions


def merge_flags(user: str, ours: dict) -> tuple:
    """(new THEANO_FLAGS, what we set, notes on user flags we overrode).

    Theano keeps the last value of a key, so ours follow the user's flags; the
    optimizer_excluding value is merged, not replaced. Every value the user gave
    reaches Theano as its own parser reads it: the user's text is kept as it is
    when ours can follow it unchanged, else (a `#` comment, say) it is written
    again, each value quoted, with the same meaning.
    """
    raw_values = effective_config.parse_flags(user)
    user_values = {canonical(key): value for key, value in raw_values.items()}
    added = {}
    notes = []
    for key, value in ours.items():
        theirs = user_values.get(canonical(key))
        if key == detsettings.OPTIMIZER_EXCLUDING:
            value = detsettings.merge_excluding(theirs or "", value)
            if value == theirs:
                continue
        elif theirs == value:
            continue
        elif theirs is not None:
            notes.append(f"THEANO_FLAGS: your {key}={theirs} is not deterministic; "
                         f"{key}={value} is used (--no-flags leaves THEANO_FLAGS alone)")
        added[key] = value
    if not added:
        return user, added, notes
    wanted = {**raw_values, **added}
    ours_text = effective_config.format_flags(added)
    merged = f"{user.rstrip(',')},{ours_text}" if user.strip(", ") else ours_text
    if not reads_as(merged, wanted):
        merged = effective_config.format_flags(wanted)
    return merged, added, notes


def reads_as(text: str, flags: dict) -> bool:
    try:
        return effective_config.parse_flags(text) == flags
    except effective_config.FlagsSyntaxError:  # a comment in the user's text swallowed part of ours
        return False


def parse_flags(text: str) -> dict:
    """THEANO_FLAGS as Theano reads it, keys canonical (see effective_config.parse_flags)."""
    return {canonical(key): value for key, value in effective_config.parse_flags(text).items()}


def canonical(key: str) -> str:
    """`dnn__conv__algo_bwd_filter` (Theano-PyMC) and `dnn.conv.algo_bwd_filter` are one setting."""
    return key.replace("__", ".")  # not stripped: Theano does not strip keys either
