"""Rename calls of `Name<suffix>(...)` to `Name(...)`: the `_dev20` patch's transform.

Only *calls* change. Imports, isinstance checks, optimizer lists and class
definitions keep the suffixed name. A call is renamed where its regular name is
available:

- `X_dev20(...)` when `X` is bound at module level (imported, defined by def or
  class, or assigned to a plain name), outside function and class bodies;
- `obj.X_dev20(...)` when the module uses an attribute called `X` somewhere.

Other sites are reported as skipped. libcst does the work and keeps every other
byte; a Python 2 file (which libcst cannot parse) goes to the token-level twin in
`python_tokens`, which follows the same rules.
"""

from __future__ import annotations

import re

import libcst as cst
from libcst.helpers import get_full_name_for_node

from theano_det.patching.transforms import Result, Site, python_tokens, sorted_sites, unreadable


def apply(source: bytes, options: dict) -> Result:
    suffix = options["suffix"]
    try:
        python_tokens.source_text(source)
    except (SyntaxError, UnicodeDecodeError, LookupError) as error:  # a bad byte or coding cookie
        return unreadable(source, error)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:
        return python_tokens.apply(source, options)
    finder = CallSites(suffix, unused_marker(source))
    # One pass: each suffixed call name becomes a marker, decided on once the whole module's
    # bindings are known. The markers' places in the generated text give the sites' lines
    # and columns (libcst's PositionProvider would cost more than parsing the module).
    marked = module.visit(finder)
    code, sites, skipped = finder.resolve(marked.code)
    applied = finder.suffixed and not sites and not skipped
    return Result(code.encode(module.encoding), sorted_sites(sites), sorted_sites(skipped), "libcst",
                  already_applied=applied)


def unused_marker(source: bytes) -> str:
    """An identifier prefix that occurs nowhere in `source`."""
    marker = "_theano_det_site_"
    while marker.encode() in source:
        marker += "x_"
    return marker


class CallSites(cst.CSTTransformer):
    """Finds the calls of suffixed names and what the module binds:

    - names bound at module level (outside def and class bodies), every attribute name
      used anywhere, and whether a name with the suffix occurs at all (the patched file
      still imports and registers it);
    - each call of `X<suffix>(...)` or `obj.X<suffix>(...)`, whose name is replaced by a
      marker numbered in the order the calls are left."""

    def __init__(self, suffix: str, marker: str):
        super().__init__()
        self.suffix = suffix
        self.marker = marker
        self.names: set = set()
        self.attributes: set = set()
        self.suffixed = False
        self.depth = 0  # > 0 inside a def or class body
        self.calls: list = []  # (old name, new name, is an attribute), by marker number

    # --- what the module binds ---

    def visit_Name(self, node: cst.Name) -> None:
        self.suffixed = self.suffixed or (node.value.endswith(self.suffix) and node.value != self.suffix)

    def bind(self, name: str) -> None:
        if self.depth == 0:
            self.names.add(name)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.bind(node.name.value)
        self.depth += 1

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        self.depth -= 1
        return updated

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.bind(node.name.value)
        self.depth += 1

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.depth -= 1
        return updated

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            if alias.asname is not None:
                self.bind(cst.ensure_type(alias.asname.name, cst.Name).value)
            else:  # `import a.b` binds `a`
                self.bind(get_full_name_for_node(alias.name).split(".")[0])

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            bound = alias.asname.name if alias.asname is not None else alias.name
            self.bind(cst.ensure_type(bound, cst.Name).value)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, cst.Name):
                self.bind(target.target.value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.attributes.add(node.attr.value)

    # --- the calls ---

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        func = updated.func
        if isinstance(func, cst.Name):
            name_node = func
        elif isinstance(func, cst.Attribute):
            name_node = func.attr
        else:
            return updated
        old = name_node.value
        if not old.endswith(self.suffix) or old == self.suffix:
            return updated
        marked = name_node.with_changes(value=f"{self.marker}{len(self.calls)}")
        self.calls.append((old, old[: -len(self.suffix)], isinstance(func, cst.Attribute)))
        if isinstance(func, cst.Name):
            return updated.with_changes(func=marked)
        return updated.with_changes(func=func.with_changes(attr=marked))

    def resolve(self, code: str) -> tuple:
        """(code, sites, skipped): each marker in `code` replaced by the new name where it is
        available, else by the old one, with the line and column the old name had."""
        sites, skipped = [], []
        line, line_start, shift = 1, 0, 0  # shift: how much longer the markers before it on its line are
        newlines = re.compile(r"\r\n|\r|\n")

        def replace(match: re.Match) -> str:
            nonlocal line, line_start, shift
            for newline in newlines.finditer(code, line_start, match.start()):
                line, line_start, shift = line + 1, newline.end(), 0
            old, new, attribute = self.calls[int(match.group(1))]
            column = match.start() - line_start - shift
            shift += len(match.group(0)) - len(old)
            if new in (self.attributes if attribute else self.names):
                sites.append(Site(line, column, old, new))
                return new
            where = "used as an attribute in the module" if attribute else "bound at module level"
            skipped.append(Site(line, column, old, new, f"{new} is not {where}"))
            return old

        code = re.sub(re.escape(self.marker) + r"(\d+)", replace, code)
        return code, sites, skipped
