"""Small file-system primitives: hashing and atomic, mode-keeping writes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(Path(path).read_bytes())


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` so that readers see the old or the new bytes, never a mix.

    The temporary file sits beside the target (same file system, so os.replace is
    atomic); it is fsynced before the rename and the folder after it. A symlink is
    followed: the file it points to is replaced and the link stays. The previous
    file's mode (and owner, where we may set it) is kept.
    """
    target = Path(os.path.realpath(path))
    previous = None
    try:
        previous = os.stat(target)
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None and previous is not None:
            mode = previous.st_mode & 0o7777
        if mode is not None:
            os.chmod(tmp, mode)
        if previous is not None and hasattr(os, "chown"):
            try:
                os.chown(tmp, previous.st_uid, previous.st_gid)
            except PermissionError:
                pass  # only root may give a file away; an ordinary user keeps their own
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
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


def remove_stale_bytecode(source: Path) -> list[Path]:
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
