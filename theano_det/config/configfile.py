"""Which Theano config file `patch` writes, and the plans to write and restore it.

The file is the one Theano honours last: the right-most file of THEANORC when
that is set, else ~/.theanorc (created when missing); `--config-file` chooses
another. A symlinked file is edited where it lives and the link stays. The
manifest records what we set (theanorc.Edit) and, while nobody else has changed
the file, a backup of its bytes before, so that `unpatch` gives those bytes back
exactly; once someone has changed it, `unpatch` takes out our options only.
The functions given a `manifest` (patching's Manifest) read and change only its
`config` records (real path -> records.ConfigRecord).
"""

from __future__ import annotations

import codecs
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.config import detsettings
from theano_det.config import theanorc
from theano_det.errors import Refused
from theano_det.config.records import ConfigRecord, config_backup_name
from theano_det.fsutil import read_backup, sha256_bytes
from theano_det.target import OUR_CONFIG_ENCODING
from theano_det.textdiff import unified_diff

DEFAULT_THEANORC = "~/.theanorc"


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
    """The file `patch` writes; Refused (before any lock is taken) when it is not a regular file."""
    choice = choose_path(environ, explicit)
    check_regular(choice.path)
    return choice


def choose_path(environ, explicit: str | None) -> ConfigChoice:
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


TARGETS_ENCODING = object()  # plan_patch's default: the encoding the target's Theano reads with


def plan_patch(target, choice: ConfigChoice, caps=None, encoding=TARGETS_ENCODING) -> ConfigPlan:
    """Our settings in the chosen file; Refused (nothing written) for files we must not touch."""
    caps = caps or detsettings.capabilities(target)
    real = Path(os.path.realpath(choice.path))
    current = read_config(choice.path, real)
    check_decodable(current or b"", str(choice.path),
                    config_encoding(target) if encoding is TARGETS_ENCODING else encoding)
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
        return read_regular(real)
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise Refused(f"cannot create {path}: the folder {real.parent} does not exist; nothing was changed",
                          hint="create the folder, choose another file with --config-file, or use --no-config")
        return None
    except NotRegular as error:
        raise refuse_kind(path, error.kind) from error
    except OSError as error:
        raise Refused(f"cannot read {path}: {error.strerror}; nothing was changed",
                      hint="make it readable, choose another file with --config-file, or use --no-config") from error


# --- only regular files are config files ------------------------------------------------------------

FILE_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
              stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symlink"}


class NotRegular(OSError):
    def __init__(self, kind: str):
        super().__init__(f"it is {kind}, not a regular file")
        self.kind = kind


def kind_of(mode: int) -> str:
    return FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular(path: Path) -> None:
    """Refused unless `path` (its symlinks followed) is a regular file or does not exist.

    Replacing a device (THEANORC=/dev/null is a common way to read no config file)
    would replace it by a regular file; reading a FIFO blocks forever.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing (created later), or unreadable: reading it says so
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a folder gets its own message
        raise refuse_kind(path, kind_of(mode))


def refuse_kind(path: Path, kind: str) -> Refused:
    return Refused(f"{path} is {kind}, not a regular file; theano-det reads and replaces only regular "
                   "files as config files; nothing was changed",
                   hint="choose a regular file with --config-file (and name it in THEANORC), "
                        "or use --no-config")


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file; NotRegular for anything else, which is not even opened
    (a device may act on open). Opened without blocking, in case a FIFO took its place."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegular(kind_of(mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(kind_of(mode))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


# --- only bytes Theano can decode ---------------------------------------------------------------------


def config_encoding(target) -> str | None:
    """How the target's Theano decodes config files (None: Python 2 reads them as bytes)."""
    return getattr(target, "config_encoding", OUR_CONFIG_ENCODING)


def check_decodable(data: bytes, name: str, encoding: str | None) -> None:
    """Theano 1.0.5 reads config files with ConfigParser.read(files): open() in text mode, the
    locale's encoding. A byte that does not decode makes `import theano` fail."""
    if encoding is None:
        return
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        return  # an encoding Python here does not know: the target's interpreter judges
    try:
        data.decode(codec)
    except UnicodeDecodeError as error:
        before = data[:error.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1  # universal newlines
        raise theanorc.ConfigSyntaxError(
            f"{name} line {line}: byte 0x{data[error.start]:02x} is not {codec}, and Theano cannot read "
            f"the file (it decodes config files as {codec}, its interpreter's locale encoding)",
            hint=f"save the file as {codec} (or ASCII), or choose another file with --config-file") from error


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


def record_patch(transaction, plan: ConfigPlan, manifest, folder: Path) -> None:
    """Record the change in the manifest and back up the file's bytes (before the manifest is written)."""
    if not plan.needs_write:
        return
    key = str(plan.real_path)
    old = manifest.config.get(key)
    backup = config_backup_name(key)
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


def plan_unpatch(manifest, folder: Path) -> list:
    return [plan_restore(record, folder) for _, record in sorted(manifest.config.items())]


def plan_restore(record: ConfigRecord, folder: Path) -> ConfigRestore:
    real = Path(record.real_path)
    try:
        current = read_regular(real)
    except FileNotFoundError:
        current = None
    except NotRegular as error:
        return ConfigRestore(record, None, None, False,
                             problem=f"it is {error.kind}, not a regular file; theano-det reads and replaces "
                                     "only regular files")
    except OSError as error:
        return ConfigRestore(record, None, None, False, problem=f"cannot read it: {error.strerror}")
    keys = [change["key"] for change in record.keys]
    if current is None:  # nothing left to restore; the record goes
        return ConfigRestore(record, None, None, False, left_alone=[(key, "the file no longer exists") for key in keys])
    if sha256_bytes(current) == record.sha256_after:
        check_record_matches(record, current)
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
    if not record.existed and restored and not text.strip():
        desired = None  # we created it and only our settings were in it
    return ConfigRestore(record, current, desired, False, restored=restored, left_alone=left_alone)


def check_records(manifest) -> None:
    """Refused when a config record claims a file theano-det did not write (see check_record_matches)."""
    for record in manifest.config.values() if manifest else ():
        try:
            current = read_regular(Path(record.real_path))
        except OSError:
            continue  # missing, not a regular file or unreadable: nothing is trusted to it
        if sha256_bytes(current) == record.sha256_after:
            check_record_matches(record, current)


def check_record_matches(record: ConfigRecord, current: bytes) -> None:
    """The file's bytes are the ones the record says theano-det wrote: then the file must hold
    our settings, and a file we created nothing else. Otherwise the record names a file
    theano-det did not write (a forged or damaged manifest): Refused, nothing is done."""
    def refuse(reason: str):
        return Refused(f"the manifest's config record for {record.real_path} does not match that file: "
                       f"its sha256_after is the file's, but {reason}; nothing was done",
                       hint="theano-det did not write that file as recorded: restore the manifest from a backup, "
                            "or remove the record (and the file's settings) by hand")
    text = decode(current)
    try:
        parser = theanorc.check_theano_reads(text, record.path)
        document = theanorc.parse(text, record.path)
    except Refused as error:
        raise refuse("it is not a Theano config file") from error
    for change in record.keys:
        if theanorc.value_in(document, parser, change["section"], change["option"]) != change["value"]:
            raise refuse(f"it does not set {change['option']} = {change['value']} in [{change['section']}]")
    if not record.existed:
        ours = {(change["section"], change["option"].lower()) for change in record.keys}
        if set(theanorc.own_values(parser)) - ours:
            raise refuse("it holds settings theano-det did not write, in a file the record says it created")


def stage_unpatch(transaction, restores: list, manifest, folder: Path) -> None:
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
