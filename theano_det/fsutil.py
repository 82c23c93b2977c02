"""Small file-system primitives: hashing, staging files beside their targets, atomic writes,
and reading a backup only when it is still the recorded original."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

# Our temporary files carry this suffix so that a later run can recognise and remove
# the ones a killed run left behind.
TEMP_SUFFIX = ".theano-det-tmp"
# The second name of an original while a transaction swaps its file. After a failed
# roll-back it may be the only copy: clean-ups take it only when it holds nothing else.
KEPT_SUFFIX = ".theano-det-kept"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def real_path(path: Path) -> Path:
    """The file a path names after following symlinks: we replace it and keep the link."""
    return Path(os.path.realpath(path))


def stage(target: Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to a new temporary file beside `target`, durable, ready for os.replace.

    The temporary file gets the mode of `mode`, else the mode of the file it will
    replace, and that file's owner where we may set it; a new file gets the owner of
    its folder (root patching a user's installation leaves files that user can remove).
    """
    previous = None
    with contextlib.suppress(FileNotFoundError):
        previous = os.stat(target)
    fd, tmp = tempfile.mkstemp(prefix="." + target.name + ".", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None and previous is not None:
            mode = previous.st_mode & 0o7777
        if mode is not None:
            os.chmod(tmp, mode)
        give_owner(tmp, previous if previous is not None else os.stat(target.parent))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def give_owner(path, owner: os.stat_result) -> None:
    """Give `path` the owner of `owner` (a stat) where we may: only root may give files away."""
    if hasattr(os, "chown") and (os.stat(path).st_uid, os.stat(path).st_gid) != (owner.st_uid, owner.st_gid):
        with contextlib.suppress(PermissionError):
            os.chown(path, owner.st_uid, owner.st_gid)


def make_folder(folder: Path) -> None:
    """Create `folder` and its missing parents, each owned like the folder it is made in."""
    folder = Path(folder)
    if folder.is_dir():
        return
    make_folder(folder.parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
        give_owner(folder, os.stat(folder.parent))


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data`: readers see the old or the new bytes, never a mix."""
    target = real_path(path)
    os.replace(stage(target, data, mode), target)
    fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_bytecode(source: Path) -> list:
    """Delete compiled copies of `source` (Python 3 __pycache__ and Python 2 .pyc/.pyo).

    A .pyc whose recorded mtime and size happen to match would otherwise keep the
    old code running after the source changed.
    """
    source = Path(source)
    candidates = list((source.parent / "__pycache__").glob(source.stem + ".*.pyc"))
    candidates += [source.with_suffix(".pyc"), source.with_suffix(".pyo")]
    removed = []
    for candidate in candidates:
        try:
            candidate.unlink()
            removed.append(candidate)
        except FileNotFoundError:
            pass
    return removed


def read_backup(folder: Path, backup: str | None, sha256: str | None) -> bytes | None:
    """A backup's bytes when they are the recorded original; None when it is missing or altered.

    A backup reached through a symlink (which would lead out of the state folder) is no backup."""
    path = Path(folder) / backup if backup else None
    if path is None or sha256 is None or not inside(folder, path) or not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if sha256_bytes(data) == sha256 else None


def inside(folder: Path, path: Path) -> bool:
    """Does `path`, every symlink followed, stay inside `folder`?"""
    root = Path(os.path.realpath(folder))
    return Path(os.path.realpath(path)).is_relative_to(root)
