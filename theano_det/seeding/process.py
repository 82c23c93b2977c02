"""Replacing this process with another program (used by `run` and by `seed_all`'s re-exec)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import NoReturn

from theano_det.errors import CannotRun


def replace_process(argv: list, env: dict) -> NoReturn:
    """Become `argv` with environment `env`: same process id, stdio, signals and exit status.

    On POSIX this is exec; nothing of ours runs after it. Windows has no exec,
    so there we wait for the program and exit with its status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if os.name == "nt":
            sys.exit(subprocess.call(argv, env=env))
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        raise CannotRun(f"cannot start {argv[0]}: {error.strerror or error}") from error
