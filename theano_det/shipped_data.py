"""The data shipped with theano-det in `patches/`: where it is, and the table of known files.

The table (known-files.json, written by tools/known_files.py from the pinned releases)
records results worked out in advance for released Theano files, by sha256: what each
replayable transform gives (patching/known_files.py replays it) and what detsettings finds
in the files that declare config flags (`module_facts` here). Config and patching both
read it, so it lives below both.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from theano_det.fsutil import sha256_bytes

KNOWN_FILES = "known-files.json"
KNOWN_FILES_FORMAT = 1


def patches_folder() -> Path:
    try:
        from theano_det import patches  # installed: `patches/` is shipped as this package
    except ImportError:  # a source checkout on PYTHONPATH: the folder beside the package
        return Path(__file__).resolve().parent.parent / "patches"
    return Path(patches.__file__).parent


@lru_cache(maxsize=None)
def known_files_table() -> dict:
    """The shipped table ({} when it is missing or of another format)."""
    try:
        data = json.loads((patches_folder() / KNOWN_FILES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if data.get("format") == KNOWN_FILES_FORMAT else {}


def module_facts(relative: str, source: bytes) -> tuple | None:
    """detsettings.module_facts(source, relative) for a released file, from the table, with each flag
    as a tuple of its fields; None when not known."""
    entry = known_files_table().get("modules", {}).get(relative, {}).get(sha256_bytes(source))
    if entry is None:
        return None
    # the flags' fields (detsettings.Flag makes them flags: this layer does not know config)
    flags = [(name, key, None if values is None else tuple(values), declared_in)
             for name, key, values, declared_in in entry["flags"]]
    return flags, list(entry["optimizers"]), entry["conv3d_bwd_filter"]
