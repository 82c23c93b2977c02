"""Transform results known in advance, so that a released Theano file is not parsed again.

patches/known-files.json (written by tools/known_files.py from the pinned releases of
tests/releases.py; tests/test_known_files.py checks it is what the tool writes now; read
by shipped_data) records, for a transform with its options and an input's sha256, what
the transform gives: the sites, the parser and the sha256 of the output; and, for the files
detsettings reads, what it finds in them (shipped_data.module_facts). `transform` rebuilds the
output by replaying the recorded renames on the input and uses it only when it has
the recorded sha256. Anything else (an unknown or edited file, a stale table) goes
through the real transform: the result is always the one the transform gives, and
libcst is imported only then.
"""

from __future__ import annotations

import json
import re

from theano_det.fsutil import sha256_bytes
from theano_det.patching import transforms
from theano_det.patching.transforms import Result, Site
from theano_det.shipped_data import KNOWN_FILES_FORMAT, known_files_table

# Transforms worth recording: slow (libcst), and their sites say exactly what changed
# (`old` replaced by `new` at line/column), so the output can be rebuilt from them.
REPLAYABLE = ("python-call-rename",)
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line breaks libcst and the token scanner count


def transform(kind: str, source: bytes, options: dict) -> Result:
    """What `transforms.get(kind)(source, options)` returns, from the table where it can."""
    known = lookup(kind, source, options)
    return known if known is not None else transforms.get(kind)(source, options)


def lookup(kind: str, source: bytes, options: dict) -> Result | None:
    """The recorded result for this input, rebuilt and checked; None when not known."""
    if kind not in REPLAYABLE:
        return None
    entry = table().get(fingerprint(kind, options), {}).get(sha256_bytes(source))
    if entry is None:
        return None
    sites = [Site(*fields) for fields in entry["sites"]]
    output = replay(source, sites)
    if output is None or sha256_bytes(output) != entry["output"]:
        return None  # a stale or damaged table: the real transform decides
    return Result(output, sites, [Site(*fields) for fields in entry["skipped"]], entry["parser"])


def fingerprint(kind: str, options: dict) -> str:
    """One key for a transform and its options (a changed patch definition misses the table)."""
    return sha256_bytes(json.dumps([kind, options], sort_keys=True).encode("utf-8"))


def replay(source: bytes, sites: list) -> bytes | None:
    """`source` with each site's `old` text replaced by its `new` text; None when one is not there."""
    text = source.decode("utf-8", "surrogateescape")
    pieces, breaks = LINE_BREAK.split(text), LINE_BREAK.findall(text)
    for site in sorted(sites, key=lambda site: (site.line, site.column), reverse=True):
        if not 1 <= site.line <= len(pieces):
            return None
        line = pieces[site.line - 1]
        if line[site.column:site.column + len(site.old)] != site.old:
            return None
        pieces[site.line - 1] = line[:site.column] + site.new + line[site.column + len(site.old):]
    return "".join(piece + brk for piece, brk in zip(pieces, breaks + [""])).encode("utf-8", "surrogateescape")


def table() -> dict:
    """{fingerprint: {input sha256: entry}} of the recorded transforms."""
    return {key: recorded["files"] for key, recorded in known_files_table().get("transforms", {}).items()}


def record(results: list, modules: list = ()) -> dict:
    """The table document for [(label, kind, options, source, Result)] and
    [(label, relative, source, module facts)] (tools/known_files.py)."""
    data = {"format": KNOWN_FILES_FORMAT, "transforms": {}, "modules": {}}
    for label, relative, source, (flags, optimizers, conv3d) in modules:
        entry = data["modules"].setdefault(relative, {}).setdefault(sha256_bytes(source), {
            "seen_in": [],
            "flags": [[flag.name, flag.key, flag.values, flag.declared_in] for flag in flags],
            "optimizers": list(optimizers),
            "conv3d_bwd_filter": conv3d,
        })
        entry["seen_in"].append(label)
    for label, kind, options, source, result in results:
        if kind not in REPLAYABLE:
            continue
        recorded = data["transforms"].setdefault(
            fingerprint(kind, options), {"kind": kind, "options": options, "files": {}})
        entry = recorded["files"].setdefault(sha256_bytes(source), {
            "seen_in": [],
            "output": sha256_bytes(result.source),
            "parser": result.parser,
            "sites": [site_fields(site) for site in result.sites],
            "skipped": [site_fields(site) for site in result.skipped],
        })
        entry["seen_in"].append(label)
    return data


def site_fields(site: Site) -> list:
    return [site.line, site.column, site.old, site.new, site.note]
