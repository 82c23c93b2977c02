"""Token-level twin of `python_calls` for sources libcst cannot parse (Python 2).

Theano 0.7.0's sdist is Python 2 code (2to3 ran at install time on Python 3), and
a Python 2.7 installation keeps it so. A small scanner that knows strings,
comments, names, brackets and indentation is enough to apply the same rules as
the libcst transform: it finds statement starts, module-level bindings (import,
from-import, def, class, `name = ...`), attribute names, and calls. The tests
prove both give identical results on every file both can read.
"""

from __future__ import annotations

import io
import keyword
import re
import tokenize
from dataclasses import dataclass

from theano_det.patching.transforms import Result, Site, sorted_sites, unreadable

TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\r\n]*)
  | (?P<string>(?:[rRbBuUfF]{1,2})?(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\"
                |'(?:[^'\\\r\n]|\\.)*'|"(?:[^"\\\r\n]|\\.)*"))
  | (?P<name>[^\W\d]\w*)
  | (?P<number>\d[\w.]*)
  | (?P<continuation>\\\r?\n|\\\r)
  | (?P<newline>\r\n|\r|\n)
  | (?P<op>\*\*=|//=|>>=|<<=|->|:=|==|!=|<=|>=|<>|[-+*/%&|^@]=|\*\*|//|<<|>>|[^\s\w])
  | (?P<space>[ \t\f]+)
    """,
    re.VERBOSE | re.DOTALL,
)

OPEN, CLOSE = "([{", ")]}"
COMPOUND = {"if", "elif", "else", "try", "except", "finally", "for", "while", "with"}


@dataclass
class Token:
    kind: str
    text: str
    offset: int
    line: int
    column: int
    depth: int  # open brackets before this token


def scan(text: str) -> list:
    """Every token with its position; whitespace dropped, newlines and comments kept."""
    tokens, line, line_start, depth = [], 1, 0, 0
    for match in TOKEN.finditer(text):
        kind, value, offset = match.lastgroup, match.group(), match.start()
        if kind != "space":
            tokens.append(Token(kind, value, offset, line, offset - line_start, depth))
        if kind == "op" and value in OPEN:
            depth += 1
        elif kind == "op" and value in CLOSE:
            depth = max(depth - 1, 0)
        breaks = value.count("\n") + value.count("\r") - value.count("\r\n")
        if breaks:
            line += breaks
            line_start = offset + max(value.rfind("\n"), value.rfind("\r")) + 1
    return tokens


def neighbour(tokens: list, index: int, step: int, newlines: bool = True):
    """Index of the nearest token from `index` in direction `step` that is code, or None.

    Comments and line continuations never count; newlines only count where they
    end a statement (`newlines=False`).
    """
    skip = ("comment", "continuation", "newline") if newlines else ("comment", "continuation")
    index += step
    while 0 <= index < len(tokens):
        if tokens[index].kind not in skip:
            return index
        index += step
    return None


def text_at(tokens: list, index) -> str:
    return tokens[index].text if index is not None else ""


def opens_scope(tokens: list, index: int) -> bool:
    """Does the statement starting at `index` define a function or class?"""
    head = tokens[index].text
    return head in ("def", "class") or (head == "async" and text_at(tokens, neighbour(tokens, index, 1)) == "def")


def statements(tokens: list):
    """Yield (index of a statement's first token, module_level) for every simple statement."""
    scopes, at_line_start, line_head = [], True, None
    for index, token in enumerate(tokens):
        if token.kind in ("comment", "continuation"):
            continue
        if token.kind == "newline":
            at_line_start = at_line_start or token.depth == 0
            continue
        if at_line_start:
            while scopes and token.column <= scopes[-1]:
                scopes.pop()
            starts, at_line_start, line_head = True, False, token
        else:
            previous = text_at(tokens, neighbour(tokens, index, -1))
            starts = token.depth == 0 and (
                previous == ";" or (previous == ":" and line_head.text in COMPOUND)
            )
        if starts:
            yield index, not scopes
            if opens_scope(tokens, index):
                scopes.append(line_head.column)


def module_bindings(tokens: list) -> set:
    names = set()
    for start, module_level in statements(tokens):
        if not module_level:
            continue
        head = tokens[start].text
        if opens_scope(tokens, start):
            name = neighbour(tokens, start, 1)
            if head == "async":
                name = neighbour(tokens, name, 1)
            if name is not None and tokens[name].kind == "name":
                names.add(tokens[name].text)
        elif head == "import":
            names.update(imported_names(tokens, start + 1, dotted_binds_first=True))
        elif head == "from":
            index = start + 1
            while index < len(tokens) and tokens[index].text != "import":
                index += 1
            names.update(imported_names(tokens, index + 1, dotted_binds_first=False))
        else:  # `a = b = value` binds a and b
            index = start
            while tokens[index].kind == "name" and text_at(tokens, neighbour(tokens, index, 1, False)) == "=":
                names.add(tokens[index].text)
                index = neighbour(tokens, neighbour(tokens, index, 1, False), 1, False)
                if index is None:
                    break
    return names


def imported_names(tokens: list, index: int, dotted_binds_first: bool) -> list:
    """The names an import list binds: `a.b` binds `a` (import) and `x as y` binds `y`."""
    names = []
    while index < len(tokens):
        token = tokens[index]
        if (token.kind == "newline" and token.depth == 0) or token.text == ";":
            break
        if token.kind == "name":
            dotted = [token.text]
            dot = neighbour(tokens, index, 1)
            while text_at(tokens, dot) == "." and tokens[neighbour(tokens, dot, 1)].kind == "name":
                index = neighbour(tokens, dot, 1)
                dotted.append(tokens[index].text)
                dot = neighbour(tokens, index, 1)
            follower = neighbour(tokens, index, 1)
            if text_at(tokens, follower) == "as":
                index = neighbour(tokens, follower, 1)
                names.append(tokens[index].text)
            else:
                names.append(dotted[0] if dotted_binds_first else dotted[-1])
        index += 1
    return names


def attribute_names(tokens: list) -> set:
    names = set()
    for index, token in enumerate(tokens):
        follower = neighbour(tokens, index, 1)
        if token.text == "." and token.kind == "op" and follower is not None and tokens[follower].kind == "name":
            names.add(tokens[follower].text)
    return names


def source_text(source: bytes) -> tuple:
    """(text, encoding) of a Python source as Python decodes it: its coding cookie, else
    UTF-8. SyntaxError or UnicodeDecodeError when Python could not read it either."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    return source.decode(encoding), encoding


def apply(source: bytes, options: dict) -> Result:
    suffix = options["suffix"]
    try:
        text, encoding = source_text(source)
    except (SyntaxError, UnicodeDecodeError, LookupError) as error:
        return unreadable(source, error)
    tokens = scan(text)
    names, attributes = module_bindings(tokens), attribute_names(tokens)
    sites, skipped, pieces, last = [], [], [], 0
    for index, token in enumerate(tokens):
        if token.kind != "name" or not token.text.endswith(suffix) or token.text == suffix:
            continue
        if keyword.iskeyword(token.text):  # `not(...)`, `assert(...)` are not calls
            continue
        # Inside brackets a call's "(" may sit on the next line; outside, a newline ends the statement.
        follower = neighbour(tokens, index, 1, newlines=token.depth > 0)
        previous = text_at(tokens, neighbour(tokens, index, -1))
        if text_at(tokens, follower) != "(" or previous in ("def", "class"):
            continue
        new = token.text[: -len(suffix)]
        is_attribute = previous == "."
        if new not in (attributes if is_attribute else names):
            where = "used as an attribute in the module" if is_attribute else "bound at module level"
            skipped.append(Site(token.line, token.column, token.text, new, f"{new} is not {where}"))
            continue
        sites.append(Site(token.line, token.column, token.text, new))
        pieces += [text[last : token.offset], new]
        last = token.offset + len(token.text)
    pieces.append(text[last:])
    suffixed = any(token.kind == "name" and token.text.endswith(suffix) and token.text != suffix for token in tokens)
    return Result("".join(pieces).encode(encoding), sorted_sites(sites), sorted_sites(skipped), "tokens",
                  already_applied=suffixed and not sites and not skipped)
