"""The value Theano will use for each determinism setting, and where it comes from.

Theano's precedence (configparser.py in every release): THEANO_FLAGS, then the
files of THEANORC (default ~/.theanorc), the right-most file winning. Files are
read into one configparser with Theano's defaults (USER, PID, ...) and a value
that fails to interpolate is read raw, as Theano does. `status` uses this to say
when THEANO_FLAGS or a file to the right overrides a setting `patch` wrote.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from theano_det.config import detsettings
from theano_det.config import theanorc
from theano_det.config.configfile import NotRegular, check_decodable, config_encoding, decode, read_regular, theanorc_files
from theano_det.errors import Refused

FLAGS = "THEANO_FLAGS"
DEFAULT = "default"
REPORTED = (detsettings.ALGO_FWD,)  # relevant, but theano-det does not set them


@dataclass
class SettingState:
    name: str  # canonical dotted name
    key: str  # as the target spells it
    wanted: str | None  # what theano-det sets; None for a setting we only report
    value: str  # what Theano will use
    source: str  # "THEANO_FLAGS", a config file, or "default"
    verdict: str  # detsettings.verdict
    shadowed: list = field(default_factory=list)  # [(source, value)] weaker sources, strongest first
    overridden_by: str | None = None  # a stronger source with a non-deterministic value ...
    hides: str | None = None  # ... over a deterministic one in this weaker source

    @property
    def pending(self) -> bool:
        return self.wanted is not None and self.verdict != "deterministic"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "key": self.key,
            "wanted": self.wanted,
            "value": self.value,
            "source": self.source,
            "verdict": self.verdict,
            "shadowed": [{"source": source, "value": value} for source, value in self.shadowed],
            "overridden_by": self.overridden_by,
            "hides": self.hides,
        }


@dataclass
class ConfigStatus:
    files: list  # [(path, exists)] THEANORC files, weakest first
    settings: list  # SettingState
    unfixable: list  # in words
    problems: list = field(default_factory=list)  # config files Theano cannot read (it fails to import)
    notes: list = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return any(setting.pending for setting in self.settings)

    def to_json(self) -> dict:
        return {
            "files": [{"path": str(path), "exists": exists} for path, exists in self.files],
            "settings": [setting.to_json() for setting in self.settings],
            "unfixable": self.unfixable,
            "problems": self.problems,
            "notes": self.notes,
            "pending": self.pending,
        }


class FlagsSyntaxError(Refused):
    """THEANO_FLAGS that Theano's own parser rejects (Theano then fails to import)."""


def parse_flags(value: str) -> dict:
    """THEANO_FLAGS exactly as Theano parses it (configparser.parse_config_string, 0.7 - 1.0.5):
    shlex in POSIX mode splitting on commas only, so quotes and backslashes work as in a
    shell and `#` starts a comment; each piece is stripped, split at its first `=` (keys
    are not stripped further), pieces without `=` are ignored, and later keys win."""
    splitter = shlex.shlex(value, posix=True)
    splitter.whitespace = ","
    splitter.whitespace_split = True
    try:
        pairs = list(splitter)
    except ValueError as error:  # unbalanced quotes, a trailing backslash: Theano raises too
        raise FlagsSyntaxError(
            f"THEANO_FLAGS cannot be read ({error}): Theano fails to import with it",
            hint="fix the quoting in THEANO_FLAGS (`theano-det run --no-flags` leaves it alone)") from error
    flags = {}
    for pair in pairs:
        key, sep, item = pair.strip().partition("=")
        if sep:
            flags[key] = item
    return flags


SAFE_IN_FLAGS = re.compile(r"[\w@%+=:./-]+", re.ASCII)  # nothing parse_flags treats specially


def quote_flag(pair: str) -> str:
    """`key=value` as a THEANO_FLAGS piece that parse_flags reads back as exactly that."""
    if SAFE_IN_FLAGS.fullmatch(pair):
        return pair
    return "'" + pair.replace("'", "'\"'\"'") + "'"  # the shell's way: POSIX shlex reads it alike


def format_flags(flags: dict) -> str:
    """THEANO_FLAGS text that parse_flags reads as `flags` (values as Theano keeps them: stripped)."""
    return ",".join(quote_flag(f"{key}={value}") for key, value in flags.items())


def theano_defaults(environ) -> dict:
    """The interpolation defaults Theano gives its configparser."""
    return {
        "USER": environ.get("USER", os.path.split(os.path.expanduser("~"))[-1]),
        "LSCRATCH": environ.get("LSCRATCH", ""),
        "TMPDIR": environ.get("TMPDIR", ""),
        "TEMP": environ.get("TEMP", ""),
        "TMP": environ.get("TMP", ""),
        "PID": str(os.getpid()),
    }


@dataclass
class FileValues:
    path: Path
    parser: configparser.ConfigParser  # interpolating, with Theano's defaults
    raw: configparser.RawConfigParser
    flat: configparser.RawConfigParser  # [DEFAULT] as a plain section: where an option is written


def read_files(files: list, environ, problems: list, notes: list, encoding: str | None) -> list:
    """FileValues of each existing, readable regular file, weakest first; problems and notes in words.

    `encoding`: how the target's Theano decodes them (configfile.config_encoding).
    """
    read = []
    for path in files:
        try:
            data = read_regular(path)
        except FileNotFoundError:
            continue
        except NotRegular as error:
            notes.append(f"{path} is {error.kind}, not a regular file: theano-det does not read it "
                         "(Theano does: a device gives what it gives, a FIFO blocks the import)")
            continue
        except OSError as error:  # configparser.read() skips a file it cannot open: so does Theano
            notes.append(f"{path}: cannot read it ({error.strerror}); Theano skips it too")
            continue
        text = decode(data)
        try:
            check_decodable(data, str(path), encoding)
            raw = theanorc.check_theano_reads(text, str(path))
        except theanorc.ConfigSyntaxError as error:
            problems.append(f"{error.detail} (Theano fails to import with it)")
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        parser = configparser.ConfigParser(theano_defaults(environ), strict=True)
        parser.read_string(text, source=str(path))
        flat = configparser.RawConfigParser(strict=True, default_section="\0")
        flat.read_string(text, source=str(path))
        read.append(FileValues(path, parser, raw, flat))
    return read


def file_sources(read: list, section: str, option: str) -> list:
    """[(file, value)] strongest first: an option in its section beats any [DEFAULT], then right beats left."""
    in_section = [values for values in reversed(read) if values.flat.has_option(section, option)]
    # Theano asks configparser for section/option: [DEFAULT] counts only where the section exists
    exists = any(values.flat.has_section(section) for values in read)
    in_default = [values for values in reversed(read) if exists and values.flat.has_option("DEFAULT", option)]
    return [(str(values.path), file_value(values, section, option)) for values in in_section + in_default]


def file_value(values: FileValues, section: str, option: str) -> str:
    """Interpolated as Theano does: raw when interpolation fails."""
    try:
        return values.parser.get(section, option)
    except configparser.Error:
        try:
            return values.raw.get(section, option)
        except configparser.NoSectionError:
            return values.raw.defaults()[option]


def evaluate(target, environ=None, caps=None, written: tuple = ()) -> ConfigStatus:
    """`written`: config files theano-det wrote for this target (from its manifest)."""
    environ = os.environ if environ is None else environ
    caps = caps or detsettings.capabilities(target)
    files = theanorc_files(environ)
    problems, notes = [], list(caps.problems)
    read = read_files(files, environ, problems, notes, config_encoding(target))
    try:
        flags = parse_flags(environ.get(FLAGS, ""))
    except FlagsSyntaxError as error:
        problems.append(error.message)
        flags = {}
    ours = {setting.name: setting for setting in detsettings.deterministic_settings(target, caps)}
    states = []
    for name in [*ours, *[name for name in REPORTED if name in caps.flags and name not in ours]]:
        flag = caps.flags[name]
        section, option = detsettings.file_location(flag.key, caps.separator)
        sources = []  # strongest first
        if flag.key in flags:
            sources.append((FLAGS, flags[flag.key]))
        sources += file_sources(read, section, option)
        source, value = sources[0] if sources else (DEFAULT, flag.default or "")
        state = SettingState(name, flag.key, ours[name].value if name in ours else None, value, source,
                             detsettings.verdict(name, value, caps), shadowed=sources[1:])
        hidden = next((weaker for weaker, weaker_value in sources[1:]
                       if detsettings.verdict(name, weaker_value, caps) == "deterministic"), None)
        if state.verdict != "deterministic" and hidden:
            state.overridden_by, state.hides = source, hidden
        states.append(state)
    notes += [f"THEANORC names {path}, which does not exist" for path in files
              if environ.get("THEANORC") is not None and not path.exists()]
    read_paths = {os.path.realpath(path) for path in files}
    notes += [f"theano-det wrote its settings into {path}, which Theano does not read now "
              f"(THEANORC={environ.get('THEANORC', '(not set)')})"
              for path in written if os.path.realpath(path) not in read_paths]
    return ConfigStatus([(path, path.exists()) for path in files], states,
                        detsettings.unfixable(target, caps), problems, notes)
