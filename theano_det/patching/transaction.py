"""All-or-nothing writes into someone's installation and config files.

A Transaction is a list of planned writes (new bytes, or removal). `commit()` works
in two phases. First every new content is staged in a temporary file beside its
target and made durable; a failure here (disk full, permission) changes nothing.
Then the targets are swapped in, in order, each by one atomic os.replace, after
keeping the current file under a hard link. If anything fails, or SIGINT, SIGTERM
or SIGHUP arrives, the kept files are renamed back, newest first: roll-back only
renames, so it still works on a full disk. Each file ends as it was or as planned.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from theano_det.errors import Refused
from theano_det.fsutil import KEPT_SUFFIX, fsync_dir, make_folder, real_path, stage

LOCK_POLL_SECONDS = 0.05


@dataclass
class Write:
    path: Path
    data: bytes | None  # None: remove the file
    mode: int | None = None


class Interrupted(KeyboardInterrupt):
    """A termination signal arrived while files were being written."""


class Transaction:
    """`allowed`: the folders (anything inside) and files (exactly) this transaction may
    write or remove, symlinks followed; a planned write elsewhere refuses the whole of it.
    None: anywhere (for callers that chose every path themselves)."""

    def __init__(self, allowed: tuple | None = None):
        self.writes: list = []
        self.allowed = None if allowed is None else tuple(real_path(Path(path)) for path in allowed)

    def write(self, path: Path, data: bytes, mode: int | None = None) -> None:
        self.writes.append(Write(Path(path), data, mode))

    def remove(self, path: Path) -> None:
        self.writes.append(Write(Path(path), None))

    def check_writable(self) -> None:
        """Refuse before the first write when a target lies outside what we may touch, or
        its folder is read-only."""
        for item in self.writes:
            target = real_path(item.path)
            if self.allowed is not None and not any(target == root or target.is_relative_to(root) for root in self.allowed):
                raise Refused(
                    f"refusing to write {item.path}: it leads to {target}, outside the Theano package "
                    "and the chosen config file; nothing was changed",
                    hint="a symlink in the installation or its .theano-det folder points elsewhere: "
                    "look at it, remove it, and run again",
                )
        for item in self.writes:
            folder = nearest_existing(real_path(item.path).parent)
            if not os.access(folder, os.W_OK | os.X_OK):  # also False on a read-only file system
                raise Refused(
                    f"cannot write to {folder}: permission denied or read-only; nothing was changed",
                    hint="run theano-det as the owner of that folder (for a system-wide Theano, "
                    "with sudo), or work in a virtual environment",
                )

    def commit(self) -> None:
        self.check_writable()
        staged, swapped = [], []  # (target, temporary or None); (target, kept link or None)
        with signals_raise():
            try:
                for item in self.writes:
                    target = real_path(item.path)
                    make_folder(target.parent)
                    staged.append((target, None if item.data is None else stage(target, item.data, item.mode)))
                for index, (target, temporary) in enumerate(staged):
                    kept = keep(target, index)
                    swapped.append((target, kept))
                    if temporary is not None:
                        os.replace(temporary, target)
                    elif kept is not None:
                        os.unlink(target)
            except OSError as error:  # disk full, permission, I/O: a refusal, not a crash
                roll_back(swapped)
                raise Refused(f"cannot write {error.filename or 'a file'}: {error.strerror or error}; "
                              "every file was put back as it was, nothing was changed") from error
            except BaseException:
                roll_back(swapped)
                raise
            finally:
                for _target, temporary in staged:
                    if temporary is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(temporary)
        # In order: the manifest is written last, so its kept copy goes last, and a run killed
        # here leaves the previous manifest beside every other kept file (see leftovers).
        for target, kept in swapped:
            if kept is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(kept)
        for folder in {target.parent for target, _ in swapped}:
            fsync_dir(folder)


def roll_back(swapped: list) -> None:
    """Put every swapped file back, newest first; go on past a failure and report all."""
    failures = []
    for target, kept in reversed(swapped):
        try:
            if kept is not None and target.exists() and os.path.samefile(kept, target):
                os.unlink(kept)  # never swapped: rename() between two links of one file does nothing
            elif kept is not None:
                os.replace(kept, target)
            elif target.exists():
                os.unlink(target)
        except OSError as error:
            failures.append(f"{target}: {error}")
    if failures:
        raise RollBackFailed(
            "could not undo every write; each original is kept beside its file as "
            f".NAME.*{KEPT_SUFFIX} (later runs keep them): " + "; ".join(failures)
        )


class RollBackFailed(Refused):
    pass


def keep(target: Path, index: int) -> Path | None:
    """A second name (hard link) for the current file, so it can be put back by a rename."""
    if not target.exists():
        return None
    kept = target.with_name(f".{target.name}.{os.getpid()}-{index}{KEPT_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(kept)
    os.link(target, kept)
    return kept


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
def locked(package_dir: Path, timeout: float):
    """Hold the installation's lock: a second run waits up to `timeout` seconds, then refuses.

    The lock is an flock on the package folder itself: there is no lock file that a run
    could remove while another waits on it, that would need write access to create,
    or that root would leave behind owned by root."""
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"lock timeout {timeout!r} is not a number of seconds >= 0")
    try:
        fd = os.open(package_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        raise Refused(f"cannot lock {package_dir}: {error.strerror}; nothing was changed") from error
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Refused(
                        f"another theano-det run holds the lock on {package_dir} (waited {timeout:g} s); "
                        "nothing was changed",
                        hint="wait for it to finish and run again",
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
            except OSError as error:
                raise Refused(f"cannot lock {package_dir}: {error.strerror}; nothing was changed") from error
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock
