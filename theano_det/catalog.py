"""The patch definitions shipped in `patches/` (package `theano_det.patches`), as objects.

A patch file says what to change and why; code elsewhere only interprets it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the `theano` package folder, with "/"
    expected_sites: int
    seen_in: tuple = ()


@dataclass(frozen=True)
class Patch:
    id: str
    title: str
    why: str
    transform: str
    options: dict = field(default_factory=dict)
    files: tuple = ()
    group: str = "source"  # patches in a group are switched off together (e.g. --no-compat)

    def file_spec(self, relative_path: str) -> FileSpec | None:
        return next((spec for spec in self.files if spec.path == relative_path), None)


def patches_folder() -> Path:
    try:
        from theano_det import patches  # installed: `patches/` is shipped as this package
    except ImportError:  # a source checkout on PYTHONPATH: the folder beside the package
        return Path(__file__).resolve().parent.parent / "patches"
    return Path(patches.__file__).parent


def load_all(folder: Path | None = None) -> list:
    folder = folder or patches_folder()
    return [load(path) for path in sorted(folder.glob("*.toml"))]


def load(path: Path) -> Patch:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    files = tuple(
        FileSpec(entry["path"], int(entry["expected_sites"]), tuple(entry.get("seen_in", ())))
        for entry in data["files"]
    )
    return Patch(
        id=data["id"],
        title=data["title"],
        why=data["why"].strip(),
        transform=data["transform"],
        options=dict(data.get("options", {})),
        files=files,
        group=data.get("group", "source"),
    )
