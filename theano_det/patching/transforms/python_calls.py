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

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, PositionProvider

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
    bindings = ModuleBindings(suffix)
    module.visit(bindings)
    renamer = CallRenamer(suffix, bindings.names, bindings.attributes)
    # The module was parsed here and is used once: no need for the wrapper's defensive deep copy.
    new_module = MetadataWrapper(module, unsafe_skip_copy=True).visit(renamer)
    applied = bindings.suffixed and not renamer.sites and not renamer.skipped
    return Result(new_module.bytes, sorted_sites(renamer.sites), sorted_sites(renamer.skipped), "libcst",
                  already_applied=applied)


class ModuleBindings(cst.CSTVisitor):
    """Names bound at module level, every attribute name used anywhere, and whether a
    name with the suffix occurs at all (the patched file still imports and registers it)."""

    def __init__(self, suffix: str):
        super().__init__()
        self.suffix = suffix
        self.names: set = set()
        self.attributes: set = set()
        self.suffixed = False
        self.depth = 0  # > 0 inside a def or class body

    def visit_Name(self, node: cst.Name) -> None:
        self.suffixed = self.suffixed or (node.value.endswith(self.suffix) and node.value != self.suffix)

    def bind(self, name: str) -> None:
        if self.depth == 0:
            self.names.add(name)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.bind(node.name.value)
        self.depth += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth -= 1

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.bind(node.name.value)
        self.depth += 1

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.depth -= 1

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


class CallRenamer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, suffix: str, names: set, attributes: set):
        super().__init__()
        self.suffix = suffix
        self.names = names
        self.attributes = attributes
        self.sites: list = []
        self.skipped: list = []

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        func = updated.func
        if isinstance(func, cst.Name):
            name_node, available = func, self.names
            where = "bound at module level"
        elif isinstance(func, cst.Attribute):
            name_node, available = func.attr, self.attributes
            where = "used as an attribute in the module"
        else:
            return updated
        old = name_node.value
        if not old.endswith(self.suffix) or old == self.suffix:
            return updated
        new = old[: -len(self.suffix)]
        position = self.get_metadata(PositionProvider, original.func)
        if isinstance(func, cst.Attribute):
            position = self.get_metadata(PositionProvider, original.func.attr)
        line, column = position.start.line, position.start.column
        if new not in available:
            self.skipped.append(Site(line, column, old, new, f"{new} is not {where}"))
            return updated
        self.sites.append(Site(line, column, old, new))
        renamed = name_node.with_changes(value=new)
        if isinstance(func, cst.Name):
            return updated.with_changes(func=renamed)
        return updated.with_changes(func=func.with_changes(attr=renamed))
