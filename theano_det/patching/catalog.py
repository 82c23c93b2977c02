"""The patch definitions shipped in `patches/` (package `theano_det.patches`), as objects.

A patch file says what to change and why; code elsewhere only interprets it.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.patching.transforms import anchored_text
from theano_det.shipped_data import patches_folder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib


# Keys of a `[[files]]` entry that the engine reads; any other key is an option of the
# patch's transform for that file alone (e.g. the `edits` of an anchored-text patch).
FILE_KEYS = ("path", "expected_sites", "seen_in", "sha256")


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the `theano` package folder, with "/"
    expected_sites: int
    seen_in: tuple = ()
    options: dict = field(default_factory=dict)  # transform options for this file only
    # The released files this entry is written for (sha256 of each). Empty: any file
    # whose sites match. Otherwise a file holding anything else is left alone with a
    # note instead of refused: the patch is optional there (e.g. a compat patch).
    sha256: tuple = ()

    def knows(self, content: bytes) -> bool:
        return not self.sha256 or hashlib.sha256(content).hexdigest() in self.sha256


@dataclass(frozen=True)
class Patch:
    id: str
    title: str
    why: str
    transform: str
    options: dict = field(default_factory=dict)
    files: tuple = ()
    group: str = "source"  # patches in a group are switched off together (e.g. --no-compat)
    # The patch applies only to a Theano that has all these files (its layout and era,
    # detected from the installed source); elsewhere its files are left alone.
    only_if_present: tuple = ()

    def file_spec(self, relative_path: str) -> FileSpec | None:
        return next((spec for spec in self.files if spec.path == relative_path), None)

    def applies_to(self, package_dir: Path) -> bool:
        return all((Path(package_dir) / relative).is_file() for relative in self.only_if_present)

    def has_files_in(self, package_dir: Path) -> bool:
        """Would this patch change something here: its layout, and a file of a release it knows?"""
        return self.applies_to(package_dir) and any(
            (Path(package_dir) / spec.path).is_file() and spec.knows((Path(package_dir) / spec.path).read_bytes())
            for spec in self.files
        )

    def options_for(self, relative_path: str) -> dict:
        spec = self.file_spec(relative_path)
        return {**self.options, **spec.options} if spec else dict(self.options)


def load_all(folder: Path | None = None) -> list:
    folder = folder or patches_folder()
    return [load(path) for path in sorted(folder.glob("*.toml"))]


def known_files(catalogue: list | None = None) -> set:
    """Every file (relative to the package) that a patch of the catalogue changes."""
    return {spec.path for patch in (load_all() if catalogue is None else catalogue) for spec in patch.files}


def load(path: Path) -> Patch:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    files = tuple(file_spec(entry, data["transform"]) for entry in data["files"])
    return Patch(
        id=data["id"],
        title=data["title"],
        why=data["why"].strip(),
        transform=data["transform"],
        options=dict(data.get("options", {})),
        files=files,
        group=data.get("group", "source"),
        only_if_present=tuple(data.get("only_if_present", ())),
    )


def file_spec(entry: dict, transform: str) -> FileSpec:
    options = {key: value for key, value in entry.items() if key not in FILE_KEYS}
    expected = entry.get("expected_sites")
    if transform == anchored_text.KIND:
        # Every edit says how often its anchor occurs; the file's total follows from them.
        counted = anchored_text.total_sites(options)
        if expected is not None and int(expected) != counted:
            raise ValueError(f"{entry['path']}: expected_sites is {expected}, but its edits add up to {counted}")
        expected = counted
    return FileSpec(entry["path"], int(expected), tuple(entry.get("seen_in", ())), options,
                    tuple(entry.get("sha256", ())))
