"""The user docs match the CLI: every command and option is documented, every
documented `theano-det` command line is one the CLI accepts, and the README stays
short and free of developer-only paths."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from doc_blocks import code_blocks
from theano_det.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
USER_DOCS = [README, *sorted(DOCS.glob("*.md"))]

# Where each command's reference lives.
COMMAND_PAGES = {
    "patch": "patch.md",
    "unpatch": "patch.md",
    "status": "patch.md",
    "run": "run.md",
    "verify": "verify.md",
    "trace": "trace.md",
    "diff": "trace.md",
    "audit": "trace.md",
    "compare": "docker.md",
}


def commands() -> dict:
    return dict(cli.commands)


def long_options(command: click.Command) -> list:
    names = []
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:  # hidden: deprecated spellings
            names += [name for name in param.opts + param.secondary_opts if name.startswith("--")]
    return [name for name in names if name != "--help"]


def test_every_command_has_a_page():
    assert set(commands()) == set(COMMAND_PAGES), "a command without a docs page, or a page for a removed command"
    for page in set(COMMAND_PAGES.values()):
        assert (DOCS / page).is_file(), page


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_every_option_is_documented_on_its_page(name):
    text = (DOCS / COMMAND_PAGES[name]).read_text()
    missing = [option for option in long_options(commands()[name])
               if not re.search(rf"{re.escape(option)}(?![\w-])", text)]
    assert not missing, f"docs/{COMMAND_PAGES[name]} does not document {missing} of `theano-det {name}`"


def documented_command_lines() -> list:
    """`theano-det ...` lines of the docs' shell code blocks, without prompts and comments."""
    found = []
    for path in USER_DOCS:
        for block in code_blocks(path):
            for offset, line in enumerate(block.lines):
                code = line.strip().removeprefix("$ ")
                code = re.sub(r"^(?:[A-Z_]+=\S*\s+)+", "", code)  # VAR=value prefixes
                if code.startswith("theano-det ") and "[-" not in code:  # a synopsis ([--opt]) is not a command line
                    found.append((f"{path.relative_to(ROOT)}:{block.line + offset}",
                                  code.split("  #")[0].split(";")[0].strip()))
    return found


def test_the_docs_show_command_lines():
    assert len(documented_command_lines()) >= 5


@pytest.mark.parametrize("where,line", documented_command_lines())
def test_every_documented_command_line_parses(where, line, tmp_path, monkeypatch):
    words = shlex.split(line)[1:]
    monkeypatch.chdir(tmp_path)
    for word in words[1:]:  # the files an example names (traces, verify documents) exist in a user's folder
        if not word.startswith("-") and "/" not in word:
            (tmp_path / word).touch()
    name = words[0]
    assert name in commands(), f"{where}: `{name}` is not a theano-det command"
    command = commands()[name]
    with click.Context(cli) as parent:
        command.make_context(name, words[1:], parent=parent)  # raises on an unknown option or a bad value


def test_help_runs_for_every_command():
    runner = CliRunner()
    for name in commands():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        for option in long_options(commands()[name]):
            assert option in result.output


def test_readme_is_short_and_has_no_developer_paths():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for path in USER_DOCS:
        assert not re.search(r"shared/gpu|\.gpu/", path.read_text()), path


def test_readme_links_resolve():
    for path in USER_DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to missing {target}"
