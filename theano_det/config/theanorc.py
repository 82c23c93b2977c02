"""Our settings into a Theano config file and out again, every other byte kept.

Pure text in, text out: `apply` sets options and returns the records `undo` needs
to take exactly those options out again. ConfigUpdater finds where sections and
options are; the edit itself replaces, inserts or removes whole lines, so every
line we do not own keeps its bytes, including CRLF endings, comments and `%`
characters (Theano interpolates `%(USER)s`, we never do). Every result is parsed
again the way Theano parses it and compared before anyone may write it.
"""

from __future__ import annotations

import bisect
import configparser
import re
from dataclasses import dataclass, field

from theano_det.config.detsettings import merge_excluding, split_excluding, unmerge_excluding
from theano_det.errors import Refused

COMMENT_PREFIXES = ("#", ";")
LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")
OPTION_PREFIX = re.compile(r"^(?P<prefix>[ \t]*(?P<key>[^\r\n]*?)[ \t]*[=:][ \t]*)")


@dataclass
class OptionSpan:
    start: int  # first line
    end: int  # after the last line of the value (trailing comment and blank lines excluded)


@dataclass
class SectionSpan:
    name: str
    header: int  # line of "[name]"
    insert_at: int  # where a new option goes: after the last option, else after the header
    options: dict = field(default_factory=dict)  # lower-case option name -> OptionSpan
    blocks: int = 0  # options and comments in the section


@dataclass
class Document:
    """A config file's text, split into lines (endings kept), and where things are."""

    lines: list
    sections: dict  # name -> SectionSpan

    @property
    def newline(self) -> str:
        """The file's line ending, for lines we add: CRLF when most of its lines use it."""
        crlf = sum(line.endswith("\r\n") for line in self.lines)
        return "\r\n" if crlf * 2 > len(self.lines) else "\n"


@dataclass
class KeyChange:
    """One option we set: enough to take it out again exactly."""

    section: str
    option: str
    key: str  # the THEANO_FLAGS key (the target's spelling)
    value: str  # what we wrote
    previous: str | None  # the value before (as Theano read it); None: the option was absent
    previous_lines: str | None  # the option's lines before, byte for byte
    added: str = ""  # optimizer_excluding: the names we appended to the user's

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Edit:
    """What `apply` did to one text."""

    keys: list = field(default_factory=list)  # KeyChange, in the order applied
    sections_added: list = field(default_factory=list)  # [name, blank line added before it]
    last_line: str | None = None  # the original last line when it had no line ending


class ConfigSyntaxError(Refused):
    """The file is not one Theano can read; we leave it alone. `detail` says what, without the outcome."""

    def __init__(self, detail: str, hint: str | None = None):
        super().__init__(detail + "; nothing was changed", hint)
        self.detail = detail


def split_lines(text: str) -> list:
    return LINE.findall(text)


def parse(text: str, name: str) -> Document:
    """The document's structure; ConfigSyntaxError (with the line) when Theano could not read it."""
    check_theano_reads(text, name)
    if re.search(r"\r(?!\n)", text):
        raise ConfigSyntaxError(
            f"{name} has carriage returns without line feeds (old Mac line endings); "
            "theano-det does not edit such a file",
            hint="convert its line endings (LF or CRLF), or choose another file with --config-file",
        )
    from configupdater import ConfigUpdater  # here: `status` reads config files without it

    updater = ConfigUpdater()
    try:
        updater.read_string(text, source=name)
    except configparser.Error as error:
        raise ConfigSyntaxError(syntax_message(name, error)) from error
    if str(updater) != text:
        raise ConfigSyntaxError(f"{name}: ConfigUpdater cannot read it without changing it")
    return Document(split_lines(text), locate(updater, text))


def check_theano_reads(text: str, name: str) -> configparser.RawConfigParser:
    """Parse as Theano does (Python's strict configparser, universal newlines)."""
    parser = configparser.RawConfigParser(strict=True)
    try:
        parser.read_string(text.replace("\r\n", "\n").replace("\r", "\n"), source=name)
    except configparser.Error as error:
        raise ConfigSyntaxError(syntax_message(name, error),
                                hint="fix that line (Theano itself cannot read the file), "
                                     "or choose another file with --config-file") from error
    return parser


def syntax_message(name: str, error: configparser.Error) -> str:
    if isinstance(error, configparser.MissingSectionHeaderError):  # a ParsingError: ask first
        detail = f"line {error.lineno}: a setting before any [section] header: {error.line.strip()!r}"
    elif isinstance(error, configparser.ParsingError):
        lineno, line = error.errors[0]
        detail = f"line {lineno}: cannot parse {line}"
    elif isinstance(error, configparser.DuplicateSectionError):
        detail = f"line {error.lineno}: section [{error.section}] appears twice"
    elif isinstance(error, configparser.DuplicateOptionError):
        detail = f"line {error.lineno}: option {error.option!r} appears twice in [{error.section}]"
    else:
        detail = str(error).splitlines()[0]
    return f"{name} has a syntax error, {detail}"


def locate(updater: ConfigUpdater, text: str) -> dict:
    """Line spans of sections and options, from the blocks ConfigUpdater found."""
    from configupdater import Option, Section

    line_of = line_index(text)
    sections = {}
    position = 0
    for block in updater.iter_blocks():
        size = len(str(block))
        if isinstance(block, Section):
            children = list(block.iter_blocks())
            header_size = size - sum(len(str(child)) for child in children)
            header = line_of(position)
            span = SectionSpan(block.name, header, insert_at=header + len(split_lines(str(block)[:header_size])))
            child_position = position + header_size
            for child in children:
                child_size = len(str(child))
                if isinstance(child, Option):
                    start = line_of(child_position)
                    lines = split_lines(str(child))
                    end = start + len(lines)
                    while end - 1 > start and is_comment_or_blank(lines[end - 1 - start]):
                        end -= 1
                    span.options[child.key.lower()] = OptionSpan(start, end)
                    # indented comments under an option belong to it: a new option goes after them
                    indented = end
                    while indented - start < len(lines) and lines[indented - start][:1].isspace() \
                            and lines[indented - start].strip():
                        indented += 1
                    span.insert_at = indented
                    span.blocks += 1
                elif str(child).strip():
                    span.blocks += 1  # a comment
                child_position += child_size
            sections[block.name] = span
        position += size
    return sections


def line_index(text: str):
    """offset -> number of the line that holds it."""
    starts = [0] + [match.end() for match in re.finditer("\n", text)]
    return lambda offset: bisect.bisect_right(starts, offset) - 1


def is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith(COMMENT_PREFIXES)


def line_ending(line: str) -> str:
    return "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""


def own_values(parser: configparser.RawConfigParser) -> dict:
    """{(section, option): raw value} as Theano reads the text, [DEFAULT] included once."""
    values = {(parser.default_section, option): value for option, value in parser.defaults().items()}
    for section in parser.sections():
        for option in parser.options(section):
            values[(section, option)] = parser.get(section, option)
    return values


def value_in(document: Document, parser: configparser.RawConfigParser, section: str, option: str) -> str | None:
    """The value of an option written in that section (not one inherited from [DEFAULT])."""
    span = document.sections.get(section)
    if span is None or option.lower() not in span.options:
        return None
    return parser.get(section, option)


@dataclass
class Wanted:
    """A setting to put into a config file."""

    section: str
    option: str
    key: str  # the THEANO_FLAGS key, recorded for messages
    value: str
    merged: bool = False  # optimizer_excluding: our names are merged into the user's


def apply(text: str, wanted: list, name: str) -> tuple:
    """(new text, Edit): every Wanted set in the text; options already so are left alone."""
    edit = Edit()
    before = own_values(check_theano_reads(text, name))
    if text and not line_ending(split_lines(text)[-1]):
        edit.last_line = split_lines(text)[-1]
    for setting in wanted:
        document = parse(text, name)
        previous = value_in(document, check_theano_reads(text, name), setting.section, setting.option)
        value = merge_excluding(previous or "", setting.value) if setting.merged else setting.value
        if previous == value:
            continue
        lines = list(document.lines)
        span = document.sections.get(setting.section)
        found = span.options.get(setting.option.lower()) if span else None
        previous_lines = None
        if found is not None:
            if found.end - found.start > 1:
                raise Refused(
                    f"{name} line {found.start + 1}: {setting.option} spans several lines; "
                    "theano-det only edits one-line values; nothing was changed",
                    hint=f"put {setting.option} on one line, or use --no-config")
            previous_lines = lines[found.start]
            lines[found.start] = replace_value(lines[found.start], value)
        else:
            insert_at = span.insert_at if span else append_section(lines, setting.section, document.newline, edit)
            end_last_line(lines, insert_at, document.newline, edit)
            lines.insert(insert_at, f"{setting.option} = {value}{document.newline}")
        text = "".join(lines)
        added = ":".join(name for name in split_excluding(value) if name not in split_excluding(previous or ""))
        edit.keys.append(KeyChange(setting.section, setting.option, setting.key, value, previous,
                                   previous_lines, added if setting.merged else ""))
    after = own_values(check_theano_reads(text, name))
    ours = {(change.section, change.option.lower()) for change in edit.keys}
    for change in edit.keys:
        if after.get((change.section, change.option.lower())) != change.value:
            raise Refused(f"{name}: setting {change.option} in [{change.section}] did not give "
                          f"the value {change.value!r}; nothing was changed")
    verify_others_kept(before, after, ours, name)
    return text, edit


def verify_others_kept(before: dict, after: dict, ours: set, name: str) -> None:
    """Every option that is not ours reads as before (ConfigUpdater's rule: re-parse before writing)."""
    for place, value in before.items():
        if place not in ours and after.get(place) != value:
            raise Refused(f"{name}: editing would change {place[1]} in [{place[0]}]; nothing was changed",
                          hint="please report this file's layout to theano-det; use --no-config meanwhile")


def replace_value(line: str, value: str) -> str:
    """The option's line with a new value: its key, spacing and line ending kept."""
    prefix = OPTION_PREFIX.match(line).group("prefix")
    if prefix.endswith(("=", ":")) and not line[len(prefix):].strip():
        prefix += " "  # "key =" had no value: "key = value", not "key =value"
    return prefix + value + line_ending(line)


def append_section(lines: list, section: str, newline: str, edit: Edit) -> int:
    """Add `[section]` at the end (after a blank line); returns where its first option goes."""
    end_last_line(lines, len(lines), newline, edit)
    blank = bool(lines) and bool(lines[-1].strip())
    if blank:
        lines.append(newline)
    lines.append(f"[{section}]{newline}")
    edit.sections_added.append([section, blank])
    return len(lines)


def end_last_line(lines: list, insert_at: int, newline: str, edit: Edit) -> None:
    """A line inserted after the last line needs that line to end with a newline."""
    if insert_at == len(lines) and lines and not line_ending(lines[-1]):
        lines[-1] += newline


def undo(text: str, edit: Edit, name: str) -> tuple:
    """(new text, restored keys, left alone [(key, reason)]): our options out, the user's back.

    An option that no longer holds the value we wrote was changed by someone: it
    stays as it is. For optimizer_excluding only the names we added are taken out.
    """
    restored, left_alone = [], []
    before = own_values(check_theano_reads(text, name))
    for change in reversed(edit.keys):
        document = parse(text, name)
        value = value_in(document, check_theano_reads(text, name), change.section, change.option)
        if value is None:
            left_alone.append((change.key, "removed since theano-det set it"))
            continue
        found = document.sections[change.section].options[change.option.lower()]
        lines = list(document.lines)
        current = lines[found.start]
        if value == change.value and found.end - found.start == 1:
            replacement = [] if change.previous_lines is None else [change.previous_lines]
            if replacement and not line_ending(replacement[0]):
                replacement[0] += line_ending(current)  # the old last line; we ended it
        elif change.added and set(split_excluding(change.added)) <= set(split_excluding(value)) \
                and found.end - found.start == 1:  # someone added names: take out only ours
            remaining = unmerge_excluding(value, change.added)
            if split_excluding(remaining):
                replacement = [replace_value(current, remaining)]
            elif change.previous_lines is not None and not split_excluding(change.previous or ""):
                replacement = [change.previous_lines]  # the user's own empty value
            else:
                replacement = []  # nothing left: an empty optimizer_excluding is Theano's default
        else:
            left_alone.append((change.key, f"changed since theano-det set it (now {value!r})"))
            continue
        lines[found.start:found.end] = replacement
        text = "".join(lines)
        restored.append(change.key)
    text = remove_added_sections(text, edit, name)
    if edit.last_line is not None and text.endswith(edit.last_line + line_ending(text)):
        text = text[: len(text) - len(line_ending(text))]
    ours = {(change.section, change.option.lower()) for change in edit.keys}
    verify_others_kept(before, own_values(check_theano_reads(text, name)), ours, name)
    return text, restored, left_alone


def remove_added_sections(text: str, edit: Edit, name: str) -> str:
    """A section we added goes when nothing (no option, no comment) is left in it."""
    for section, blank_before in reversed(edit.sections_added):
        document = parse(text, name)
        span = document.sections.get(section)
        if span is None or span.blocks:
            continue
        lines = list(document.lines)
        first = span.header
        if blank_before and first > 0 and not lines[first - 1].strip():
            first -= 1
        del lines[first:span.header + 1]
        text = "".join(lines)
    return text
