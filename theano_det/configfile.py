"""Which Theano config file `patch` writes, and the plans to write and restore it.

The file is the one Theano honours last: the right-most file of THEANORC when
that is set, else ~/.theanorc (created when missing); `--config-file` chooses
another. A symlinked file is edited where it lives and the link stays. The
manifest records what we set (theanorc.Edit) and, while nobody else has changed
the file, a backup of its bytes before, so that `unpatch` gives those bytes back
exactly; once someone has changed it, `unpatch` takes out our options only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from theano_det import detsettings, theanorc
from theano_det.errors import Refused
from theano_det.fsutil import sha256_bytes
from theano_det.manifest import ConfigRecord, Manifest, read_backup
from theano_det.sourceplan import unified_diff

DEFAULT_THEANORC = "~/.theanorc"
BACKUP_FOLDER = "config-backup"


@dataclass(frozen=True)
class ConfigChoice:
    path: Path  # absolute, as addressed (a symlink stays a symlink)
    why: str  # in words, for the report
    read_by_theano: bool  # False: neither THEANORC nor the default names it


def theanorc_files(environ) -> list:
    """The files Theano reads, weakest first, as Theano computes them (empty entries dropped)."""
    value = environ.get("THEANORC")
    entries = (value if value is not None else DEFAULT_THEANORC).split(os.pathsep)
    return [Path(os.path.abspath(os.path.expanduser(entry))) for entry in entries if entry.strip()]


def choose(environ, explicit: str | None = None) -> ConfigChoice:
    files = theanorc_files(environ)
    if explicit is not None:
        path = Path(os.path.abspath(os.path.expanduser(explicit)))
        return ConfigChoice(path, "--config-file", path in files)
    if environ.get("THEANORC") is not None:
        if not files:
            raise Refused(
                "THEANORC is set but names no file, so Theano reads no config file; nothing was changed",
                hint="unset THEANORC, or choose a file with --config-file (and add it to THEANORC), "
                "or use --no-config")
        return ConfigChoice(files[-1], "the right-most file of THEANORC", True)
    return ConfigChoice(files[-1], "~/.theanorc (THEANORC is not set)", True)


@dataclass
class ConfigPlan:
    """What `patch` would do to one config file."""

    choice: ConfigChoice
    real_path: Path
    current: bytes | None  # None: the file does not exist
    desired: bytes | None
    edit: theanorc.Edit = field(default_factory=theanorc.Edit)
    notes: list = field(default_factory=list)

    @property
    def needs_write(self) -> bool:
        return self.desired is not None and self.desired != self.current

    def diff(self) -> str:
        label = str(self.choice.path)
        return unified_diff(label, self.current or b"", self.desired or b"",
                            labels=("/dev/null" if self.current is None else label, label))

    def to_json(self) -> dict:
        return {
            "path": str(self.choice.path),
            "real_path": str(self.real_path),
            "why": self.choice.why,
            "read_by_theano": self.choice.read_by_theano,
            "exists": self.current is not None,
            "would_change": self.needs_write,
            "settings": [change.to_json() for change in self.edit.keys],
            "notes": self.notes,
        }


def plan_patch(target, choice: ConfigChoice, caps=None) -> ConfigPlan:
    """Our settings in the chosen file; Refused (nothing written) for files we must not touch."""
    caps = caps or detsettings.capabilities(target)
    real = Path(os.path.realpath(choice.path))
    current = read_config(choice.path, real)
    text = decode(current or b"")
    wanted, notes = [], []
    for setting in detsettings.deterministic_settings(target, caps):
        if setting.section != "global" and not caps.files_read_nested_keys:
            notes.append(f"{setting.key}: this Theano cannot read it from a config file "
                         "(only from THEANO_FLAGS; theano-det run sets it)")
            continue
        wanted.append(theanorc.Wanted(setting.section, setting.option, setting.key, setting.value, setting.merged))
    new_text, edit = theanorc.apply(text, wanted, str(choice.path))
    if not choice.read_by_theano:
        notes.append(f"Theano does not read {choice.path}: name it in THEANORC (or drop --config-file)")
    plan = ConfigPlan(choice, real, current, encode(new_text) if edit.keys else current, edit, notes)
    if plan.needs_write:  # a read-only file that already holds our settings is fine
        check_writable(choice.path, real, current is not None)
    if current is None and plan.needs_write:
        plan.notes.append(f"{choice.path} does not exist: theano-det creates it")
    return plan


def read_config(path: Path, real: Path) -> bytes | None:
    if real.is_dir():
        raise Refused(f"{path} is a folder, not a config file; nothing was changed",
                      hint="choose a file with --config-file, or use --no-config")
    try:
        return real.read_bytes()
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise Refused(f"cannot create {path}: the folder {real.parent} does not exist; nothing was changed",
                          hint="create the folder, choose another file with --config-file, or use --no-config")
        return None
    except OSError as error:
        raise Refused(f"cannot read {path}: {error.strerror}; nothing was changed",
                      hint="make it readable, choose another file with --config-file, or use --no-config") from error


def check_writable(path: Path, real: Path, exists: bool) -> None:
    """A read-only file was made so on purpose (even root may not replace it); neither may an unwritable folder."""
    if exists:
        if not is_writable(real):
            raise Refused(f"{path} is read-only; nothing was changed",
                          hint="make it writable (chmod u+w), choose another file with --config-file, "
                               "or use --no-config")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise Refused(f"cannot write to {real.parent}: permission denied; nothing was changed",
                      hint="choose another file with --config-file, or use --no-config")


def is_writable(real: Path) -> bool:
    """Not read-only by its mode (root ignores modes, we do not), and writable for us."""
    return bool(os.stat(real).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(real, os.W_OK)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def record_patch(transaction, plan: ConfigPlan, manifest: Manifest, folder: Path) -> None:
    """Record the change in the manifest and back up the file's bytes (before the manifest is written)."""
    if not plan.needs_write:
        return
    key = str(plan.real_path)
    old = manifest.config.get(key)
    backup = f"{BACKUP_FOLDER}/{sha256_bytes(key.encode())[:16]}.theanorc"
    before = sha256_bytes(plan.current) if plan.current is not None else None
    # The file is its original again (an unpatch was interrupted after restoring it): record it
    # afresh, with a new backup, as on a first patch.
    original_again = old is not None and (before == old.sha256_before if old.existed else plan.current is None)
    if old is None or original_again:
        record = ConfigRecord(path=str(plan.choice.path), real_path=key, existed=plan.current is not None,
                              sha256_before=before or sha256_bytes(b""),
                              backup=backup if plan.current is not None else None)
        if plan.current is not None:
            transaction.write(folder / backup, plan.current)
    else:  # patched before: the original stays restorable while nobody else has changed the file
        record = old
        if before != old.sha256_after:
            record.sha256_before = None
            if old.backup:
                transaction.remove(folder / old.backup)
                record.backup = None
            if plan.current is None:
                record.existed = False
        settings_changed = {(change.section, change.option.lower()) for change in plan.edit.keys}
        record.keys = [key_change for key_change in record.keys
                       if (key_change["section"], key_change["option"].lower()) not in settings_changed]
    record.keys += [change.to_json() for change in plan.edit.keys]
    record.sections_added += plan.edit.sections_added
    if record.last_line is None:
        record.last_line = plan.edit.last_line
    record.sha256_after = sha256_bytes(plan.desired)
    manifest.config[key] = record


def write_patch(transaction, plan: ConfigPlan) -> None:
    if plan.needs_write:
        transaction.write(plan.real_path, plan.desired, None if plan.current is not None else new_file_mode())


@dataclass
class ConfigRestore:
    """What `unpatch` would do to one config file."""

    record: ConfigRecord
    current: bytes | None
    desired: bytes | None  # None: remove the file (we created it)
    exact: bool  # the bytes from before theano-det, not our options taken out one by one
    restored: list = field(default_factory=list)  # keys
    left_alone: list = field(default_factory=list)  # (key, reason)
    problem: str = ""  # the whole file is left alone, and the record kept

    @property
    def needs_write(self) -> bool:
        return not self.problem and self.desired != self.current

    def diff(self) -> str:
        label = self.record.path
        return unified_diff(label, self.current or b"", self.desired or b"",
                            labels=(label, "/dev/null" if self.desired is None else label))

    def to_json(self) -> dict:
        return {
            "path": self.record.path,
            "real_path": self.record.real_path,
            "exact": self.exact,
            "would_change": self.needs_write,
            "restored": self.restored,
            "left_alone": [{"key": key, "reason": reason} for key, reason in self.left_alone],
            "problem": self.problem or None,
        }


def plan_unpatch(manifest: Manifest, folder: Path) -> list:
    return [plan_restore(record, folder) for _, record in sorted(manifest.config.items())]


def plan_restore(record: ConfigRecord, folder: Path) -> ConfigRestore:
    real = Path(record.real_path)
    try:
        current = real.read_bytes()
    except FileNotFoundError:
        current = None
    except OSError as error:
        return ConfigRestore(record, None, None, False, problem=f"cannot read it: {error.strerror}")
    keys = [change["key"] for change in record.keys]
    if current is None:  # nothing left to restore; the record goes
        return ConfigRestore(record, None, None, False, left_alone=[(key, "the file no longer exists") for key in keys])
    if not is_writable(real):
        return ConfigRestore(record, current, current, False, problem="it is read-only: make it writable first")
    if sha256_bytes(current) == record.sha256_after and record.sha256_before is not None:
        if not record.existed:
            return ConfigRestore(record, current, None, True, restored=keys)  # we created it
        original = read_backup(folder, record.backup, record.sha256_before)
        if original is not None:
            return ConfigRestore(record, current, original, True, restored=keys)
    try:
        text, restored, left_alone = theanorc.undo(decode(current), edit_of(record), record.path)
    except theanorc.ConfigSyntaxError as error:
        return ConfigRestore(record, current, current, False, problem=error.detail)
    except Refused as error:
        return ConfigRestore(record, current, current, False, problem=error.message)
    desired = encode(text)
    if not record.existed and not text.strip():
        desired = None  # we created it and only our settings were in it
    return ConfigRestore(record, current, desired, False, restored=restored, left_alone=left_alone)


def stage_unpatch(transaction, restores: list, manifest: Manifest, folder: Path) -> None:
    for restore in restores:
        if restore.problem:
            continue  # the record stays: a later unpatch may do it
        if restore.needs_write:
            real = Path(restore.record.real_path)
            if restore.desired is None:
                transaction.remove(real)
            else:
                transaction.write(real, restore.desired)
        record = manifest.config.pop(restore.record.real_path)
        if record.backup:
            transaction.remove(folder / record.backup)


def edit_of(record: ConfigRecord) -> theanorc.Edit:
    return theanorc.Edit(
        keys=[theanorc.KeyChange(**change) for change in record.keys],
        sections_added=[list(entry) for entry in record.sections_added],
        last_line=record.last_line,
    )
