"""The record of what theano-det changed in one Theano installation.

It lives with the installation (`<theano>/.theano-det/manifest.json`, beside the
backups) so that `status` and `unpatch` work from any interpreter, and it survives a
reinstall of Theano, which lets `status` say "reinstalled since patching".
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
from theano_det.config import detsettings
from theano_det.config import theanorc
from theano_det.errors import Refused
from theano_det.fsutil import sha256_bytes

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
class ConfigRecord:
    """What theano-det set in one Theano config file (see configfile and theanorc)."""

    path: str  # as addressed when patching (a symlink stays one)
    real_path: str  # the file itself; the key of Manifest.config
    existed: bool  # False: theano-det created it
    sha256_before: str | None  # None once someone else changed the file: only our options can be undone
    backup: str | None  # the bytes before, relative to the state folder; None when the file did not exist
    sha256_after: str = ""  # what we wrote last
    keys: list = field(default_factory=list)  # theanorc.KeyChange fields, in the order applied
    sections_added: list = field(default_factory=list)  # [section, blank line added before it]
    last_line: str | None = None  # the file's last line when it had no line ending

    def to_json(self) -> dict:
        return dict(self.__dict__)


CONFIG_KEY_FIELDS = {"section": str, "option": str, "key": str, "value": str, "added": str}
CONFIG_KEY_OPTIONAL = ("previous", "previous_lines")  # a string, or null when the option was absent
CONFIG_BACKUP_FOLDER = "config-backup"
SHA256 = re.compile(r"[0-9a-f]{64}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The options theano-det writes into a config file: option -> (sections, value; None: merged names)
OUR_OPTIONS = {
    "algo_bwd_filter": (("dnn.conv", "dnn__conv"), detsettings.DETERMINISTIC_ALGO),
    "algo_bwd_data": (("dnn.conv", "dnn__conv"), detsettings.DETERMINISTIC_ALGO),
    "deterministic": (("global",), detsettings.MORE),
    "optimizer_excluding": (("global",), None),
}


def config_backup_name(real_path: str) -> str:
    """Where the bytes of a config file before patching are kept, relative to the state folder."""
    return f"{CONFIG_BACKUP_FOLDER}/{sha256_bytes(real_path.encode())[:16]}.theanorc"


class ConfigRecordError(ValueError):
    def __init__(self, real_path, field_name: str, problem: str):
        super().__init__(f"config record for {real_path}: {field_name} {problem}")


def parse_config_record(real_path: str, entry: dict) -> ConfigRecord:
    """A config record as theano-det writes it, or ConfigRecordError naming the field.

    unpatch writes and deletes the files these records name, so only what theano-det
    itself can have recorded passes: normalised absolute paths, the backup name it
    chooses for that path, its own options with its own values, and previous lines
    that set the same option.
    """
    def fail(field_name, problem):
        raise ConfigRecordError(real_path, field_name, problem)

    if not isinstance(entry, dict):
        fail("the record", "is not an object")
    if not is_clean_absolute(real_path):
        fail("real_path", "is not a normalised absolute path")
    if entry.get("real_path", real_path) != real_path:
        fail("real_path", "differs from the path the record is filed under")
    path = entry.get("path")
    if not isinstance(path, str) or not is_clean_absolute(path):
        fail("path", "is not a normalised absolute path")
    existed = entry.get("existed")
    if not isinstance(existed, bool):
        fail("existed", "is not true or false")
    before, after = entry.get("sha256_before"), entry.get("sha256_after")
    if before is not None and not (isinstance(before, str) and SHA256.fullmatch(before)):
        fail("sha256_before", "is not a sha256 digest")
    if not (isinstance(after, str) and SHA256.fullmatch(after)):
        fail("sha256_after", "is not a sha256 digest")
    backup = entry.get("backup")
    if backup is not None and backup != config_backup_name(real_path):
        fail("backup", f"is not {config_backup_name(real_path)!r}, the backup theano-det keeps for this path")
    if backup is not None and not existed:
        fail("backup", "is set for a file theano-det created")
    if backup is None and existed and before is not None:
        fail("backup", "is missing although the file existed and sha256_before is set")
    keys = entry.get("keys")
    if not isinstance(keys, list) or not keys:
        fail("keys", "is not a non-empty list")
    keys = [parse_key_change(change, fail) for change in keys]
    sections = entry.get("sections_added", [])
    ours = {change["section"] for change in keys}
    if not isinstance(sections, list) or not all(
            isinstance(item, list) and len(item) == 2 and item[0] in ours and isinstance(item[1], bool)
            for item in sections):
        fail("sections_added", "is not a list of [section of our settings, true/false]")
    last_line = entry.get("last_line")
    if last_line is not None and (not isinstance(last_line, str) or "\n" in last_line or "\r" in last_line):
        fail("last_line", "is not one line")
    return ConfigRecord(path=path, real_path=real_path, existed=existed, sha256_before=before, backup=backup,
                        sha256_after=after, keys=keys, sections_added=[list(item) for item in sections],
                        last_line=last_line)


def parse_key_change(change, fail) -> dict:
    """One option theano-det set (theanorc.KeyChange fields), checked against what it can set."""
    if not isinstance(change, dict):
        fail("keys", "holds something that is not an object")
    for name, kind in CONFIG_KEY_FIELDS.items():
        if not isinstance(change.get(name), kind):
            fail(f"keys.{name}", "is missing or not a string")
    for name in CONFIG_KEY_OPTIONAL:
        if change.get(name) is not None and not isinstance(change[name], str):
            fail(f"keys.{name}", "is not a string")
    section, option, value, added = change["section"], change["option"], change["value"], change["added"]
    previous, previous_lines = change.get("previous"), change.get("previous_lines")
    if option not in OUR_OPTIONS or section not in OUR_OPTIONS[option][0]:
        fail("keys", f"names [{section}] {option}, which theano-det does not set")
    separator = "__" if "__" in section else "."
    if change["key"] != (option if section == "global" else section + separator + option):
        fail("keys.key", f"{change['key']!r} is not the key of [{section}] {option}")
    wanted = OUR_OPTIONS[option][1]
    if wanted is None:
        names = detsettings.split_excluding(added)
        if not names or not all(IDENTIFIER.fullmatch(name) for name in names) or \
                value != detsettings.merge_excluding(previous or "", added):
            fail("keys.added", f"of {option} is not optimizer names appended to the previous value")
    elif value != wanted or added:
        fail("keys.value", f"of {option} is not {wanted!r}")
    if (previous is None) != (previous_lines is None):
        fail("keys.previous_lines", "and keys.previous are not both set or both null")
    if previous_lines is not None and not sets_option(previous_lines, option, previous):
        fail("keys.previous_lines", f"is not one line setting {option} to {previous!r}")
    return {name: change.get(name) for name in (*CONFIG_KEY_FIELDS, *CONFIG_KEY_OPTIONAL)}


def sets_option(line: str, option: str, value: str) -> bool:
    """Is `line` one config file line (its ending kept) that sets `option` to `value`?"""
    body = line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith("\n") else line
    match = theanorc.OPTION_PREFIX.match(body)
    return ("\n" not in body and "\r" not in body and match is not None
            and match.group("key").lower() == option.lower() and body[match.end():].strip() == value)


def is_clean_absolute(path) -> bool:
    return isinstance(path, str) and "\0" not in path and os.path.isabs(path) and os.path.normpath(path) == path


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


def read_backup(folder: Path, backup: str | None, sha256: str | None) -> bytes | None:
    """A backup's bytes when they are the recorded original; None when it is missing or altered.

    A backup reached through a symlink (which would lead out of the state folder) is no backup."""
    path = Path(folder) / backup if backup else None
    if path is None or sha256 is None or not inside(folder, path) or not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if sha256_bytes(data) == sha256 else None


def inside(folder: Path, path: Path) -> bool:
    """Does `path`, every symlink followed, stay inside `folder`?"""
    root = Path(os.path.realpath(folder))
    return Path(os.path.realpath(path)).is_relative_to(root)


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
