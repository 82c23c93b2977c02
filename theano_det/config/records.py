"""The config record: what theano-det set in one Theano config file, as the manifest keeps it.

Defined here, beside theanorc's KeyChange that each recorded key mirrors, and read back
only through `parse_config_record`: unpatch writes and deletes the files a record names,
so a record must be one theano-det can have written before anything uses it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields

from theano_det.config import detsettings
from theano_det.config import theanorc
from theano_det.fsutil import sha256_bytes


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


# A recorded key holds theanorc.KeyChange's fields: strings, and strings or null (null:
# the option was absent before). Any other kind of field would pass unchecked: refuse to load.
KEY_FIELDS = tuple(item.name for item in fields(theanorc.KeyChange) if item.type == "str")
KEY_OPTIONAL = tuple(item.name for item in fields(theanorc.KeyChange) if item.type == "str | None")
if len(KEY_FIELDS) + len(KEY_OPTIONAL) != len(fields(theanorc.KeyChange)):
    raise TypeError("theanorc.KeyChange has a field that config records cannot check")
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
    for name in KEY_FIELDS:
        if not isinstance(change.get(name), str):
            fail(f"keys.{name}", "is missing or not a string")
    for name in KEY_OPTIONAL:
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
    return {name: change.get(name) for name in (*KEY_FIELDS, *KEY_OPTIONAL)}


def sets_option(line: str, option: str, value: str) -> bool:
    """Is `line` one config file line (its ending kept) that sets `option` to `value`?"""
    body = line[:-2] if line.endswith("\r\n") else line[:-1] if line.endswith("\n") else line
    match = theanorc.OPTION_PREFIX.match(body)
    return ("\n" not in body and "\r" not in body and match is not None
            and match.group("key").lower() == option.lower() and body[match.end():].strip() == value)


def is_clean_absolute(path) -> bool:
    return isinstance(path, str) and "\0" not in path and os.path.isabs(path) and os.path.normpath(path) == path
