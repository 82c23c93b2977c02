"""All-or-nothing writes into someone's installation and config files.

A Transaction is a list of planned writes (new bytes, or removal). `commit()`
performs them in order with atomic replaces; if any step fails, or SIGINT, SIGTERM
or SIGHUP arrives, every write already done is undone, newest first, and the error
goes on. So each file ends either as it was or as planned, never half-written.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import filelock

from theano_det.errors import Refused
from theano_det.fsutil import atomic_write, fsync_dir

LOCK_NAME = "lock"


@dataclass
class Write:
    path: Path
    data: bytes | None  # None: remove the file
    mode: int | None = None


class Interrupted(KeyboardInterrupt):
    """A termination signal arrived while files were being written."""


class Transaction:
    def __init__(self):
        self.writes: list = []

    def write(self, path: Path, data: bytes, mode: int | None = None) -> None:
        self.writes.append(Write(Path(path), data, mode))

    def remove(self, path: Path) -> None:
        self.writes.append(Write(Path(path), None))

    def check_writable(self) -> None:
        """Refuse before the first write when a target folder or file is read-only."""
        for item in self.writes:
            real = Path(os.path.realpath(item.path))
            folder = nearest_existing(real.parent)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise Refused(
                    f"cannot write to {folder}: permission denied; nothing was changed",
                    hint="run theano-det as the owner of that folder (for a system-wide Theano, "
                    "with sudo), or work in a virtual environment",
                )
            if real.exists() and not os.access(real, os.W_OK) and not os.access(real.parent, os.W_OK):
                raise Refused(f"cannot replace {real}: permission denied; nothing was changed")

    def commit(self) -> None:
        done = []  # (path, previous bytes or None, previous mode)
        with signals_raise():
            try:
                for item in self.writes:
                    previous, mode = read_or_none(item.path), mode_or_none(item.path)
                    if item.data is None:
                        if previous is None:
                            continue
                        os.unlink(item.path)
                        fsync_dir(item.path.parent)
                    else:
                        item.path.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write(item.path, item.data, item.mode)
                    done.append((item.path, previous, mode))
            except BaseException:
                roll_back(done)
                raise


def roll_back(done: list) -> None:
    for path, previous, mode in reversed(done):
        if previous is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            atomic_write(path, previous, mode)


def read_or_none(path: Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def mode_or_none(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


def nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def signals_raise():
    """Turn SIGTERM and SIGHUP into an exception (SIGINT already is one) while writing."""

    def handler(signum, _frame):
        raise Interrupted(f"interrupted by signal {signum}")

    previous = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is None:
            continue
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: signals cannot be caught here
            pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def locked(folder: Path, timeout: float):
    """Hold the installation's lock: a second run waits up to `timeout` seconds, then refuses."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError as error:
        raise Refused(
            f"cannot create {folder}: permission denied; nothing was changed",
            hint="run theano-det as the owner of the Theano installation (for a system-wide "
            "Theano, with sudo), or work in a virtual environment",
        ) from error
    lock = filelock.FileLock(str(folder / LOCK_NAME), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout as error:
        raise Refused(
            f"another theano-det run holds {folder / LOCK_NAME} (waited {timeout:g} s); nothing was changed",
            hint="wait for it to finish and run again",
        ) from error
    except PermissionError as error:
        raise Refused(f"cannot lock {folder / LOCK_NAME}: permission denied; nothing was changed") from error
    try:
        yield
    finally:
        lock.release()
