"""Every command the docs show runs as shown: each shell code block that is a command a
user types runs here on the CPU, in a sandbox, and must exit as documented and print
what the doc shows; a block that cannot run here carries a marker saying why.

The rules (which blocks, how output is compared, the markers) are in docs/testing.md,
"The docs' commands run". The sandbox is a copy of Theano 1.0.5 (tests/releases.py)
laid out like a pip installation, importable through PYTHONPATH by the test venv's
interpreter, with HOME, THEANORC and the working folder in a temporary folder: the
test venv's own Theano and the real ~/.theanorc are never touched (checked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import CACHE, pip_target
from doc_blocks import DOC_PAGES, MARKER_KINDS, ROOT, Block, code_blocks, stray_markers
from releases import release_package
from client_libraries import KERAS_2_REQUIREMENTS

# The scripts the docs' commands name, put in the folder the commands run in.
EXAMPLES = {
    "train.py": ROOT / "docs" / "examples" / "train.py",
    "mlp.py": ROOT / "tests" / "trace_programs" / "mlp.py",
    "keras2_embedding.py": ROOT / "tests" / "clients" / "keras2_embedding.py",
}
# Theano's compile cache for the sandbox's (patched) copy: its own, small (Theano reads every
# entry's key at start-up) and apart from the shared one, which unpatched copies use. With
# -march given, Theano skips probing the CPU with the compiler in every process (seconds).
COMPILEDIR = CACHE / "theano-compile-docs"
# Read before any test sets HOME: the file the doc commands must never touch.
REAL_THEANORC = Path.home() / ".theanorc"
# Pages with many Theano processes (each starts in seconds: compiler probes, cache): `slow`.
SLOW_PAGES = {"README.md", "docs/run.md"}


# --- what a block says: its commands and the output each printed -------------------------

@dataclass
class Step:
    command: str
    shown: list = field(default_factory=list)  # the output lines the doc shows after it


def steps(block: Block) -> list:
    """A console block's `$ ` commands with the lines after each; a plain block's command lines."""
    found = []
    if block.is_console:
        for line in block.lines:
            if line.startswith("$ "):
                found.append(Step(line[2:].strip()))
            else:
                assert found, f"{block.where}: output before the first `$ ` command"
                found[-1].shown.append(line)
        return found
    joined = "\n".join(block.lines).replace("\\\n", " ")  # continuation lines
    for line in joined.splitlines():
        line = re.sub(r"\s+#(?:\s.*)?$", "", line).strip()  # a trailing comment
        if line and not line.startswith("#"):
            found.append(Step(line))
    return found


# --- comparing the doc's output with the real one ------------------------------------------

# In the doc's output: `...` or `…` stands for any text (a line of its own: any lines); an
# absolute path for any absolute path with the same last part; a hex string of 8 or more
# digits for any of the same length (the same one wherever the block repeats it, and a
# different one where it shows a different one); a decimal fraction (a time, a difference)
# for any number. Everything else, integers included, must be as shown; runs of white
# space (line breaks too) are one.
TOKENS = re.compile(
    r"(?P<wildcard>\.\.\.|…)"
    r"|(?P<path>(?<![\w.~])/[\w.+-]+(?:/[\w.+-]+)*)"
    r"|(?P<hex>(?<!\w)[0-9a-f]{8,}(?!\w))"
    r"|(?P<fraction>(?<![\w.])\d+\.\d+(?:e[-+]?\d+)?(?![\w.])|(?<![\w.])\d+e[-+]\d+(?![\w.]))"
    r"|(?P<space>\s+)"
)


def doc_pattern(shown: str) -> tuple:
    """(regular expression for the output the doc shows, the doc's hex strings in order)."""
    parts, hexes, position = [], [], 0
    for token in TOKENS.finditer(shown):
        parts.append(re.escape(shown[position:token.start()]))
        kind, text = token.lastgroup, token.group()
        if kind == "wildcard":
            parts.append(".*?")
        elif kind == "path":
            parts.append(r"(?:/[^\s/]+)*/" + re.escape(text.rsplit("/", 1)[1]))
        elif kind == "hex":
            parts.append(f"([0-9a-f]{{{len(text)}}})")
            hexes.append(text)
        elif kind == "fraction":
            parts.append(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
        else:
            parts.append(r"\s*")
        position = token.end()
    parts.append(re.escape(shown[position:]))
    return "".join(parts), hexes


def one_spaced(text: str) -> str:
    return " ".join(text.split())


def first_line_not_found(shown: list, output: str) -> str:
    """The first line of the doc's output that the real output does not contain (for the message)."""
    for line in shown:
        if line.strip() in ("", "...", "…"):
            continue
        if not re.search(doc_pattern(one_spaced(line))[0], output, re.DOTALL):
            return line
    return "(every line is there, but not in this order or with other lines between)"


def check_output(where: str, step: Step, output: str, hexes_seen: dict) -> None:
    shown = "\n".join(step.shown)
    pattern, hexes = doc_pattern(one_spaced(shown))
    real = one_spaced(output)
    found = re.fullmatch(pattern, real, re.DOTALL)
    assert found, (f"{where}: `{step.command}` printed something else than the doc shows;\n"
                   f"first line not found: {first_line_not_found(step.shown, real)}\n"
                   f"--- the doc ---\n{shown}\n--- the real output ---\n{output}")
    for doc_hex, real_hex in zip(hexes, found.groups()):
        assert hexes_seen.setdefault(doc_hex, real_hex) == real_hex, (
            f"{where}: the doc shows {doc_hex} twice, but `{step.command}` printed {real_hex}, "
            f"not {hexes_seen[doc_hex]} again")
        others = {doc for doc, real in hexes_seen.items() if real == real_hex and doc != doc_hex}
        assert not others, f"{where}: the doc shows {doc_hex} and {others.pop()}, but both are {real_hex}"


# --- the sandbox -------------------------------------------------------------------------

@dataclass
class Sandbox:
    root: Path
    env: dict

    def folder(self, name: str) -> Path:
        """A working folder holding the example scripts, as a reader's project would."""
        folder = self.root / "work" / name
        folder.mkdir(parents=True)
        for script, source in EXAMPLES.items():
            shutil.copy(source, folder / script)
        return folder

    def run(self, command: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], cwd=cwd, env=self.env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def make_sandbox(root: Path, keras: bool) -> Sandbox:
    """Theano 1.0.5 in root/site-packages with its install metadata; `theano-det` and
    `python` on PATH are the test venv's interpreter, which imports that copy first."""
    root.mkdir(exist_ok=True)
    site = root / "site-packages"
    shutil.copytree(release_package("1.0.5"), site / "theano", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "Theano-1.0.5.dist-info").mkdir()
    shutil.copy(release_package("1.0.5").parent / "PKG-INFO", site / "Theano-1.0.5.dist-info" / "METADATA")
    bin_dir, home = root / "bin", root / "home"
    bin_dir.mkdir()
    home.mkdir()
    for name, program in (("theano-det", f"'{sys.executable}' -m theano_det"),
                          ("python", f"'{sys.executable}'"), ("python3", f"'{sys.executable}'")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {program} "$@"\n')
        (bin_dir / name).chmod(0o755)
    path = [str(site)] + ([str(pip_target("keras-2.3.1", KERAS_2_REQUIREMENTS))] if keras else [])
    # A reader's environment: none of the caller's Theano flags, seeds, Python paths or
    # PYTHONDONTWRITEBYTECODE (the copy's bytecode is written once, then read).
    env = {name: value for name, value in os.environ.items() if not name.startswith(("THEANO", "PYTHON"))}
    env.update(HOME=str(home), THEANORC=str(root / "theanorc"), PYTHONPATH=os.pathsep.join(path),
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1",
               THEANO_FLAGS=f"base_compiledir={COMPILEDIR},gcc.cxxflags=-march=native")
    sandbox = Sandbox(root, env)
    assert_acts_on_the_copy(sandbox)
    return sandbox


def assert_acts_on_the_copy(sandbox: Sandbox) -> None:
    """theano-det's target and the `python` of the sandbox are the copy, nothing else."""
    status = sandbox.run("theano-det status --json", sandbox.root)
    target = Path(json.loads(status.stdout[status.stdout.index("{"):])["target"]["package_dir"])
    assert target == sandbox.root / "site-packages" / "theano", status.stdout
    where = sandbox.run("python -c 'import importlib.util; print(importlib.util.find_spec(\"theano\").origin)'",
                        sandbox.root)
    assert where.stdout.strip() == str(sandbox.root / "site-packages" / "theano" / "__init__.py"), where.stdout


def fingerprint(package: Path | None) -> dict:
    """(size, mtime) of every file of a Theano installation (or of one file)."""
    if package is None or not package.exists():
        return {}
    files = [package] if package.is_file() else sorted(package.rglob("*"))
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in files
            if path.is_file() and "__pycache__" not in path.parts}  # other tests' imports write bytecode


@pytest.fixture(scope="module")
def untouched():
    """Fails the module when the test venv's Theano or the real ~/.theanorc changed."""
    import importlib.util

    spec = importlib.util.find_spec("theano")  # not imported here
    venv_theano = Path(spec.submodule_search_locations[0]) if spec else None
    before = fingerprint(venv_theano), fingerprint(REAL_THEANORC)
    yield
    assert (fingerprint(venv_theano), fingerprint(REAL_THEANORC)) == before, "a doc command wrote outside its sandbox"


@pytest.fixture(scope="module")
def patched_sandbox(tmp_path_factory, untouched) -> Sandbox:
    """One sandbox for the pages after the README: its Theano patched, as the README's tour
    leaves it, and Keras 2.3.1 importable (docs/run.md's example)."""
    sandbox = make_sandbox(tmp_path_factory.mktemp("docs-sandbox"), keras=True)
    done = sandbox.run("theano-det patch", sandbox.root)
    assert done.returncode == 0, done.stdout
    return sandbox


# --- the blocks ----------------------------------------------------------------------------

def page_name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def command_blocks(path: Path) -> list:
    return [block for block in code_blocks(path) if block.is_command]


def runnable_pages() -> list:
    pages = [path for path in DOC_PAGES if any(block.marker is None for block in command_blocks(path))]
    return [pytest.param(path, id=page_name(path),
                         marks=[pytest.mark.slow] if page_name(path) in SLOW_PAGES else []) for path in pages]


def run_page(path: Path, sandbox: Sandbox) -> None:
    """Every unmarked command block of the page, in order, in one working folder."""
    folder = sandbox.folder(path.stem)
    for block in command_blocks(path):
        if block.marker is not None:
            continue
        hexes_seen: dict = {}
        block_steps = steps(block)
        for index, step in enumerate(block_steps):
            if step.command == "echo $?":
                continue  # checked with the command before it
            shows_status = index + 1 < len(block_steps) and block_steps[index + 1].command == "echo $?"
            cwd = ROOT if step.command.startswith(".venv/") else folder
            done = sandbox.run(step.command, cwd)
            where = f"{block.where} `{step.command}`"
            if shows_status:
                status = block_steps[index + 1]
                assert [line.strip() for line in status.shown] == [str(done.returncode)], (
                    f"{where} exited {done.returncode}, the doc shows {status.shown}:\n{done.stdout}")
            else:
                assert done.returncode == 0, (f"{where} exited {done.returncode} (a command that exits "
                                              f"otherwise is followed by `$ echo $?`):\n{done.stdout}")
            if any(line.strip() for line in step.shown):
                check_output(block.where, step, done.stdout, hexes_seen)


@pytest.mark.parametrize("path", runnable_pages())
def test_the_commands_of_the_page_run_as_shown(path, tmp_path, request, untouched):
    # The README's tour starts with `theano-det patch`: it gets a Theano of its own, pristine.
    if path.name == "README.md":
        sandbox = make_sandbox(tmp_path / "sandbox", keras=False)
    else:
        sandbox = request.getfixturevalue("patched_sandbox")
    run_page(path, sandbox)
    assert_acts_on_the_copy(sandbox)


# --- the rules themselves --------------------------------------------------------------------

def test_every_marker_is_known_says_why_and_stands_before_a_command_block():
    for path in DOC_PAGES:
        stray = stray_markers(path)
        assert not stray, f"{page_name(path)}: doc-test markers not right before a code block, lines {stray}"
        for block in code_blocks(path):
            if block.marker is None:
                continue
            kind, why = block.marker
            assert kind in MARKER_KINDS, f"{block.where}: doc-test marker {kind!r} is none of {sorted(MARKER_KINDS)}"
            assert why, f"{block.where}: the doc-test marker {kind} does not say why"
            assert block.is_command, f"{block.where}: a doc-test marker before a block that is not a command"


def test_the_docs_have_runnable_commands_and_marked_ones():
    blocks = [block for path in DOC_PAGES for block in command_blocks(path)]
    assert sum(block.marker is None for block in blocks) >= 8
    assert {block.marker[0] for block in blocks if block.marker} >= {"needs-gpu", "needs-docker", "covered"}


def test_make_demo_runs_the_tours_commands():
    """`make demo` is not run here (it builds .venv and patches its Theano): its commands are
    the README tour's, which the README test runs."""
    recipe, lines = [], (ROOT / "Makefile").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("demo:")))
    for line in lines[start + 1:]:
        if not line.startswith(("\t", "#")):
            break
        if line.startswith("\t"):
            recipe.append(re.sub(r"^(?:\w+=\S+\s+)*\$\(BIN\)/", "", line.strip()))
    tour = {step.command for block in command_blocks(ROOT / "README.md") if block.marker is None
            for step in steps(block)}
    assert recipe and set(recipe) <= tour, (recipe, tour)


@pytest.mark.parametrize("shown,output,matches", [
    ("target: Theano 1.0.5 at .../site-packages/theano", "target: Theano 1.0.5 at /x/y/site-packages/theano", True),
    ("target: Theano 1.0.5 at .../site-packages/theano", "target: Theano 1.0.4 at /x/y/site-packages/theano", False),
    ("/tmp/tour/theanorc: set x", "/tmp/pytest-1/a/theanorc: set x", True),
    ("/tmp/tour/theanorc: set x", "/tmp/pytest-1/a/theanorc.bak: set x", False),
    ("a\n...\nz", "a\nb\nc\nz", True),
    ("a\n...\nz", "a\nz", True),
    ("a\nz", "a\nb\nz", False),
    ("conv2d  stable x5  ok (0)  0.7", "conv2d stable x5 ok (0) 45.25", True),
    ("conv2d  stable x5  ok (0)  0.7", "conv2d stable x3 ok (0) 0.7", False),
    ("the doc wraps a long\nline here", "the doc wraps a long line here", True),
])
def test_output_comparison(shown, output, matches):
    found = re.fullmatch(doc_pattern(one_spaced(shown))[0], one_spaced(output), re.DOTALL)
    assert bool(found) is matches


def test_hex_strings_must_repeat_where_the_doc_repeats_them_and_differ_where_it_differs():
    same = Step("x", ["weights 5af06cc72bced811"])
    seen: dict = {}
    check_output("here", same, "weights 0123456789abcdef", seen)
    check_output("here", same, "weights 0123456789abcdef", seen)
    with pytest.raises(AssertionError, match="twice"):
        check_output("here", same, "weights fedcba9876543210", seen)
    with pytest.raises(AssertionError, match="both are"):
        check_output("here", Step("x", ["weights c26f1630028cb6e9"]), "weights 0123456789abcdef", seen)
