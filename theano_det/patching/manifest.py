"""The record of what theano-det changed in one Theano installation.

It lives with the installation (`<theano>/.theano-det/manifest.json`, beside the
backups) so that `status` and `unpatch` work from any interpreter, and it survives a
reinstall of Theano, which lets `status` say "reinstalled since patching". Every field is
checked when it is read, its config records by config/records.py, before anything is used.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from theano_det import __version__
from theano_det.config.records import parse_config_record
from theano_det.errors import Refused

STATE_DIR_NAME = ".theano-det"
FORMAT = 1
BACKUP_FOLDER = "backup"
# Far above anything theano-det writes (a few KB, nested 5 deep): a larger or deeper
# document is not ours, and bounding it keeps the JSON parser from running away.
MAX_BYTES = 1 << 20
MAX_DEPTH = 16
SHA256 = re.compile(r"[0-9a-f]{64}")


def state_dir(package_dir: Path) -> Path:
    return Path(package_dir) / STATE_DIR_NAME


@dataclass
class FileRecord:
    patches: list  # patch ids applied to this file
    sha256_before: str  # the original (what unpatch restores)
    sha256_after: str  # what we wrote
    mode: int
    backup: str  # relative to the state folder

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Manifest:
    state: str = "applied"  # "applying" while a transaction runs; left so if it was killed
    files: dict = field(default_factory=dict)  # relative path -> FileRecord
    config: dict = field(default_factory=dict)  # real path of a config file -> ConfigRecord
    declined: list = field(default_factory=list)  # patch groups left out on purpose (--no-compat)
    target: dict = field(default_factory=dict)
    tool_version: str = __version__
    created: str = ""
    updated: str = ""

    def is_empty(self) -> bool:
        return not self.files and not self.config

    def to_bytes(self) -> bytes:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        document = {
            "format": FORMAT,
            "tool": "theano-det",
            "tool_version": __version__,
            "created": self.created or now,
            "updated": now,
            "state": self.state,
            "target": self.target,
            "files": {path: record.to_json() for path, record in sorted(self.files.items())},
            "config": {path: record.to_json() for path, record in sorted(self.config.items())},
            "declined_groups": sorted(self.declined),
        }
        return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode("utf-8")


def backup_path(relative: str) -> str:
    """Where the original of a patched file is kept, relative to the state folder."""
    return f"{BACKUP_FOLDER}/{relative}"


def manifest_path(package_dir: Path) -> Path:
    return state_dir(package_dir) / "manifest.json"


def load(package_dir: Path) -> Manifest | None:
    """The installation's manifest, None when there is none; Refused when it is unreadable,
    or when anything in it is not what theano-det writes (nothing is done then)."""
    path = manifest_path(package_dir)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read for ever
            raise Refused(f"{path} is not a regular file; it should be theano-det's record, so nothing was done",
                          hint="look at it and remove it; then `theano-det status` says what is patched")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise Refused(f"cannot read {path}: {error.strerror}") from error
    try:
        return parse(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # any shape we did not write
        raise Refused(
            f"the manifest {path} is damaged ({error}); it records what theano-det changed, "
            "so nothing was done",
            hint="restore it from a backup, or reinstall Theano (pip install --force-reinstall "
            f"--no-deps theano==VERSION) and remove {path.parent}",
        ) from error


def parse(raw: bytes, known_files: set | None = None) -> Manifest:
    """The manifest in `raw`, every field checked; ValueError (naming the field) otherwise.

    `known_files`: the files a patch of the catalogue names (default: the shipped catalogue);
    a record of any other path is not ours."""
    if len(raw) > MAX_BYTES:
        raise ValueError(f"it is larger than {MAX_BYTES} bytes")
    text = raw.decode("utf-8")
    if nesting_depth(text) > MAX_DEPTH:
        raise ValueError(f"it is nested more than {MAX_DEPTH} levels deep")
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"unknown manifest format {document.get('format') if isinstance(document, dict) else document!r}")
    if document.get("state") not in ("applying", "applied"):
        raise ValueError(f"unknown state {document.get('state')!r}")
    if not isinstance(document["files"], dict):
        raise ValueError("files is not an object")
    if known_files is None:
        from theano_det.patching import catalog

        known_files = catalog.known_files()
    files = {relative: parse_file_record(relative, entry, known_files) for relative, entry in document["files"].items()}
    config = document.get("config", {})
    if not isinstance(config, dict):
        raise ValueError("config is not an object")
    config = {path: parse_config_record(path, entry) for path, entry in config.items()}
    declined = document.get("declined_groups", [])
    if not isinstance(declined, list) or not all(isinstance(group, str) for group in declined):
        raise ValueError("declined_groups is not a list of names")
    target = document.get("target", {})
    if not isinstance(target, dict):
        raise ValueError("target is not an object")
    return Manifest(
        state=document["state"],
        declined=list(declined),
        files=files,
        config=config,
        target=dict(target),
        tool_version=str(document.get("tool_version", "")),
        created=str(document.get("created", "")),
        updated=str(document.get("updated", "")),
    )


def parse_file_record(relative: str, entry, known_files: set) -> FileRecord:
    """One `files` entry: the key must be a file the catalogue patches, the backup its own."""
    field_name = f"files[{relative!r}]"
    check_relative(relative, field_name)
    if relative not in known_files:
        raise ValueError(f"{field_name}: not a file that a theano-det patch changes")
    if not isinstance(entry, dict):
        raise ValueError(f"{field_name} is not an object")
    for name in ("sha256_before", "sha256_after"):
        if not isinstance(entry.get(name), str) or not SHA256.fullmatch(entry[name]):
            raise ValueError(f"{field_name}.{name} is not a sha256")
    patches = entry.get("patches")
    if not isinstance(patches, list) or not all(isinstance(patch_id, str) for patch_id in patches):
        raise ValueError(f"{field_name}.patches is not a list of patch ids")
    mode = entry.get("mode")
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise ValueError(f"{field_name}.mode is not a file mode")
    if entry.get("backup") != backup_path(relative):
        raise ValueError(f"{field_name}.backup is {entry.get('backup')!r}, not {backup_path(relative)!r}")
    return FileRecord(patches=list(patches), sha256_before=entry["sha256_before"],
                      sha256_after=entry["sha256_after"], mode=mode, backup=entry["backup"])


def check_relative(relative, field_name: str) -> None:
    """A plain relative path with "/" separators that cannot leave the folder it is joined to."""
    if not isinstance(relative, str) or not relative or "\\" in relative or "\0" in relative:
        raise ValueError(f"{field_name} is not a relative path")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in relative.split("/")):
        raise ValueError(f"{field_name} is not a plain relative path inside the package")


def nesting_depth(text: str) -> int:
    """How deeply the JSON arrays and objects in `text` nest (strings skipped), without recursion."""
    depth = deepest = 0
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest
