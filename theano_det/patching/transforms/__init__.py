"""Source transforms that the patch definitions in `patches/` name by kind.

Each transform is a pure function: `apply(source: bytes, options: dict) -> Result`.
It never touches the file system, so a dry run and a real run share every line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Site:
    """One place a transform changes (or would change, or refused to change)."""

    line: int  # 1-based
    column: int  # 0-based, in characters
    old: str
    new: str
    note: str = ""

    def to_json(self) -> dict:
        data = {"line": self.line, "column": self.column, "old": self.old, "new": self.new}
        if self.note:
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class Result:
    source: bytes
    sites: list = field(default_factory=list)  # changed
    skipped: list = field(default_factory=list)  # found but left alone, with a note why
    parser: str = ""
    # The source carries the marks of this transform's change and nothing left to change:
    # it is already patched (how `status` knows a patched file whose manifest is gone).
    already_applied: bool = False


def unreadable(source: bytes, error: Exception) -> Result:
    """The result for a source that cannot be read as text of its kind: unknown content."""
    note = f"cannot be read: {error}"
    return Result(source, [], [Site(0, 0, "", "", note)], "none")


def sorted_sites(sites: list) -> list:
    return sorted(sites, key=lambda site: (site.line, site.column))


# kind -> the module whose `apply` does it; imported when first used (python_calls imports libcst,
# which a run that finds every file in known_files never needs)
MODULES = {"python-call-rename": "python_calls", "anchored-text": "anchored_text"}


def get(kind: str):
    """The `apply` function of the transform called `kind` in a patch file."""
    import importlib

    try:
        module = MODULES[kind]
    except KeyError:
        raise KeyError(f"unknown transform kind {kind!r}; known: {', '.join(sorted(MODULES))}") from None
    return importlib.import_module(f"theano_det.patching.transforms.{module}").apply
