"""Exact, anchored text edits: the transform for C sources (and for Python where a
fixed replacement of known text is the right tool).

A file's options hold `edits`, a list of tables:

- `name`: a short id, shown in reports;
- `anchor`: text that must occur exactly `count` times (default 1);
- `replacement`: the text put in place of each occurrence.

All or nothing per file: when any anchor occurs a different number of times, or two
edits claim overlapping text, no edit is applied. The occurrences found are then
reported as skipped, and a missing anchor as a skipped site at line 0, so the engine
refuses the file and says which anchor drifted. Anchors are looked up in the
original text only: a replacement is never searched again.
"""

from __future__ import annotations

from dataclasses import dataclass

from theano_det.patching.transforms import Result, Site, sorted_sites

KIND = "anchored-text"
PARSER = "anchored-text"
MARK = "theano-det"  # in the comment of every edit we ship that adds code: the patch's signature


@dataclass(frozen=True)
class Edit:
    name: str
    anchor: str
    replacement: str
    count: int = 1


def edits_from(options: dict) -> list:
    """The edits of a file's options, checked (a malformed patch file is a bug: ValueError)."""
    edits = []
    for number, raw in enumerate(options.get("edits", ()), 1):
        name = raw.get("name") or f"edit {number}"
        anchor, replacement, count = raw.get("anchor"), raw.get("replacement"), raw.get("count", 1)
        if not isinstance(anchor, str) or not anchor:
            raise ValueError(f"{name}: `anchor` must be non-empty text")
        if not isinstance(replacement, str):
            raise ValueError(f"{name}: `replacement` must be text")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"{name}: `count` must be a whole number >= 1")
        unknown = set(raw) - {"name", "anchor", "replacement", "count"}
        if unknown:
            raise ValueError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}")
        edits.append(Edit(name, anchor, replacement, count))
    if not edits:
        raise ValueError("an anchored-text file needs at least one entry in `edits`")
    return edits


def total_sites(options: dict) -> int:
    """How many sites a file has when every anchor occurs as expected."""
    return sum(edit.count for edit in edits_from(options))


def apply(source: bytes, options: dict) -> Result:
    text = source.decode("utf-8", "surrogateescape")
    edits = edits_from(options)
    applied = [edit for edit in edits if is_applied(text, edit)]
    # A short replacement may occur in any file: only one that carries our mark proves the patch.
    marked = any(MARK in edit.replacement for edit in applied)
    if marked and len(applied) == len(edits):  # never edit a file twice
        return Result(source, [], [], PARSER, already_applied=True)
    if marked:  # half of it patched: not a file we know, and its anchors may sit in our replacements
        note = "already applied while other edits of this file are not"
        return Result(source, [], sorted_sites([Site(0, 0, first_line(edit.anchor), first_line(edit.replacement),
                                                     f"{edit.name}: {note}") for edit in applied]), PARSER)
    found = []  # (start, end, edit)
    skipped = []
    for edit in edits:
        starts = occurrences(text, edit.anchor)
        if len(starts) != edit.count:
            note = f"{edit.name}: anchor found {len(starts)} time(s), expected {edit.count}"
            skipped += [site(text, start, edit, note) for start in starts]
            if not starts:
                skipped.append(Site(0, 0, first_line(edit.anchor), first_line(edit.replacement), note))
            continue
        found += [(start, start + len(edit.anchor), edit) for start in starts]
    found.sort(key=lambda match: match[0])
    for (start, end, edit), (next_start, _, other) in zip(found, found[1:]):
        if next_start < end:
            note = f"{other.name}: anchor overlaps the anchor of {edit.name}"
            skipped.append(site(text, next_start, other, note))
    if skipped:
        return Result(source, [], sorted_sites(skipped), PARSER)
    pieces, last, sites = [], 0, []
    for start, end, edit in found:
        pieces += [text[last:start], edit.replacement]
        sites.append(site(text, start, edit, edit.name))
        last = end
    pieces.append(text[last:])
    return Result("".join(pieces).encode("utf-8", "surrogateescape"), sites, [], PARSER)


def is_applied(text: str, edit: Edit) -> bool:
    """The edit's replacement is there at least as often as its anchor should be (another
    replacement may hold it too), and every anchor left lies inside a replacement (a
    replacement may contain its anchor)."""
    if edit.replacement == edit.anchor:
        return False
    spans = [(start, start + len(edit.replacement)) for start in occurrences(text, edit.replacement)]
    if len(spans) < edit.count:
        return False
    return all(any(start <= anchor and anchor + len(edit.anchor) <= end for start, end in spans)
               for anchor in occurrences(text, edit.anchor))


def occurrences(text: str, anchor: str) -> list:
    """Start offsets of the non-overlapping occurrences of `anchor`, left to right."""
    starts, position = [], text.find(anchor)
    while position != -1:
        starts.append(position)
        position = text.find(anchor, position + len(anchor))
    return starts


def site(text: str, offset: int, edit: Edit, note: str) -> Site:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return Site(line, column, first_line(edit.anchor), first_line(edit.replacement), note)


def first_line(snippet: str) -> str:
    """A one-line stand-in for a multi-line snippet in reports."""
    lines = [line.strip() for line in snippet.splitlines() if line.strip()]
    if not lines:
        return snippet
    return lines[0] + (" ..." if len(lines) > 1 else "")
