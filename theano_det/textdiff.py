"""The unified diff that `patch --diff`, `unpatch --diff` and the config plans show."""

from __future__ import annotations

import difflib


def unified_diff(relative: str, before: bytes, after: bytes, labels: tuple | None = None) -> str:
    """A `git diff`-style unified diff, paths relative to the package with a/ and b/ (or `labels`)."""
    if before == after:
        return ""
    fromfile, tofile = labels or ("a/" + relative, "b/" + relative)
    lines = difflib.unified_diff(
        before.decode("utf-8", "surrogateescape").splitlines(keepends=True),
        after.decode("utf-8", "surrogateescape").splitlines(keepends=True),
        fromfile=fromfile,
        tofile=tofile,
    )
    return "".join(line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n" for line in lines)
