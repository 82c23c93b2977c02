"""What a killed run leaves behind, and when it may go.

A transaction stages new contents in temporary files (TEMP_SUFFIX) and keeps each
file it replaces or removes under a second name (KEPT_SUFFIX) until it is done. A
run killed on the way leaves both. A temporary holds only new bytes: it always goes.
A kept file goes only while its bytes are present elsewhere (in a file we track or in
the state folder) or are bytes that theano-det wrote (a recorded `sha256_after`):
then it is not the only copy of an original. Anything else stays, and is named. A
backup without a manifest (a first patch killed before writing it) goes only while
the file it was taken from still holds the same bytes.

The manifest is replaced last in every transaction and its kept copy is removed
last, so a kept earlier manifest lies beside every other kept file of a killed run
and says which bytes theano-det wrote.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from theano_det.patching import manifest as manifests
from theano_det.fsutil import KEPT_SUFFIX, TEMP_SUFFIX, inside, real_path, sha256_file
from theano_det.patching.manifest import Manifest, state_dir

KEPT_MANIFEST_GLOB = ".manifest.json.*" + KEPT_SUFFIX


def remove(package_dir: Path, known_files: set, known_manifests: list, config_paths=()) -> list:
    """Remove what killed runs left; return the kept files that stay (each may be an original).

    `known_manifests`: the manifests this run saw (at its start, and now)."""
    folder = state_dir(package_dir)
    in_state_folder = folder.is_dir() and inside(package_dir, folder)
    earlier = [manifest for manifest in known_manifests if manifest is not None]
    kept_manifests = sorted(folder.glob(KEPT_MANIFEST_GLOB)) if in_state_folder else []
    earlier += [parsed for parsed in map(read_kept_manifest, kept_manifests) if parsed is not None]
    relatives = set(known_files) | {relative for record in earlier for relative in record.files}
    # A file that is a symlink out of the package is not ours to clean beside (patch refuses it).
    places = [Path(package_dir) / relative for relative in sorted(relatives)
              if inside(package_dir, Path(package_dir) / relative)]
    places += [Path(path) for path in sorted({*map(str, config_paths), *(key for record in earlier for key in record.config)})]
    temporaries, kept = [], []
    for place in places:
        found_temporaries, found_kept = beside(place)
        temporaries += found_temporaries
        kept += found_kept
    if in_state_folder:
        temporaries += folder.rglob("*" + TEMP_SUFFIX)
        kept += [path for path in folder.rglob("*" + KEPT_SUFFIX) if path not in kept_manifests]
    for temporary in temporaries:
        unlink(temporary)
    in_place = {digest(place) for place in places} - {None}
    if in_state_folder and not manifests.manifest_path(package_dir).exists():
        # Backups a killed first patch wrote before its manifest: the files still hold their bytes.
        for path in ours_in(folder, in_state_folder):
            if digest(path) in in_place:
                unlink(path)
    if not kept and not kept_manifests:
        return []
    present = in_place | {digest(path) for path in ours_in(folder, in_state_folder)}
    present.discard(None)
    written = {record.sha256_after for record in earlier
               for record in (*record.files.values(), *record.config.values()) if record.sha256_after}
    staying = [path for path in kept if digest(path) not in present | written]
    for path in kept:
        if path not in staying:
            unlink(path)
    if not staying:
        for path in kept_manifests:
            unlink(path)
    return staying


def beside(path: Path) -> tuple:
    """(temporaries, kept files) that transactions leave next to `path`."""
    target = real_path(path)
    if not target.parent.is_dir():
        return [], []
    return (sorted(target.parent.glob("." + target.name + ".*" + TEMP_SUFFIX)),
            sorted(target.parent.glob("." + target.name + ".*" + KEPT_SUFFIX)))


def ours_in(folder: Path, usable: bool) -> list:
    """The backups and manifest in the state folder (not the leftovers of killed runs)."""
    if not usable:
        return []
    return [path for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith((TEMP_SUFFIX, KEPT_SUFFIX))]


def read_kept_manifest(path: Path) -> Manifest | None:
    try:
        return manifests.parse(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not a manifest we can read: it tells nothing


def digest(path: Path) -> str | None:
    try:
        return sha256_file(path) if Path(path).is_file() else None
    except OSError:
        return None


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
