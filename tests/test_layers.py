"""Imports go only downwards: every module of theano_det/ imports only from its own layer or below.

LAYERS is the order, lowest first; docs/architecture.md ("Import order") states the same
order. Every import counts, also one inside a function, since it runs all the same.
"""

from __future__ import annotations

import ast
import re
import sys

from conftest import ROOT

PACKAGE = ROOT / "theano_det"

LAYERS = [
    "theano_det.intarget",  # runs in the target interpreter: stdlib only
    "theano_det.ops",  # runs in the user's Theano process
    "theano_det.errors",
    "theano_det.fsutil",
    "theano_det.textdiff",
    "theano_det.target",
    "theano_det.patches",  # the data folder, installed as a package
    "theano_det.shipped_data",
    "theano_det.config",
    "theano_det.patching",
    "theano_det.seeding",
    "theano_det.verification",
    "theano_det.tracing",
    "theano_det.operations",
    "theano_det.cli",
    "theano_det.__main__",
    "theano_det",  # the package root: the public API (seed_all, audit)
]
# Names of the package root any module may import: the root is loaded before any of its
# modules, and `__version__` is set before the root imports anything.
ROOT_NAMES = {"__version__"}


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def rank(name: str) -> int | None:
    """The layer of a theano_det module: its longest prefix in LAYERS."""
    matches = [index for index, layer in enumerate(LAYERS) if name == layer or name.startswith(layer + ".")]
    return max(matches, key=lambda index: len(LAYERS[index])) if matches else None


def imported_modules(path):
    """(line, module) for each theano_det module that the file at `path` imports, anywhere in it."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package `level - 1` above this module's
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                if is_module(f"{base}.{alias.name}") or f"{base}.{alias.name}" in LAYERS:
                    yield node.lineno, f"{base}.{alias.name}"
                elif not (base == "theano_det" and alias.name in ROOT_NAMES):
                    yield node.lineno, base


def upward_imports(folder=PACKAGE) -> list:
    problems = []
    for path in sorted(folder.rglob("*.py")):
        own = module_name(path)
        if rank(own) is None:
            problems.append(f"{own} is in no layer: add it to LAYERS and docs/architecture.md")
            continue
        for line, imported in sorted(set(imported_modules(path))):
            if imported != "theano_det" and not imported.startswith("theano_det."):
                continue  # the standard library, third parties, the start-up files' own names
            if rank(imported) is None:
                problems.append(f"{own}:{line} imports {imported}, which is in no layer")
            elif rank(imported) > rank(own):
                problems.append(f"{own}:{line} imports {imported}, a layer above its own")
    return problems


def test_every_module_imports_only_from_its_layer_or_below():
    assert upward_imports() == []


def test_the_check_sees_upward_imports_in_functions_and_relative_imports(tmp_path, monkeypatch):
    fake_root = tmp_path
    package = fake_root / "theano_det"
    for name in ("config", "patching", "intarget"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "__init__.py").write_text("__version__ = '0'\n")
    (package / "config" / "low.py").write_text("def f():\n    from theano_det.patching import high\n")
    (package / "patching" / "high.py").write_text("from ..config import low\nfrom theano_det import __version__\n")
    (package / "intarget" / "probe.py").write_text("import json\nimport theano_det.config.low\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert upward_imports(package) == [
        "theano_det.config.low:2 imports theano_det.patching.high, a layer above its own",
        "theano_det.intarget.probe:2 imports theano_det.config.low, a layer above its own",
    ]


def test_the_architecture_page_states_the_same_order():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Import order", 1)[1].split("\n## ", 1)[0]
    stated = [name for item in re.findall(r"^\d+\. (.*?):", section, re.M) for name in re.findall(r"`([^`]+)`", item)]
    assert stated == [layer.removeprefix("theano_det.") for layer in LAYERS]
