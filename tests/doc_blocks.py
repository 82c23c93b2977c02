"""The code blocks of the docs, and which of them are commands a user types.

Plain Python (no pytest): tests/test_docs.py and tests/test_doc_commands.py share it.
The rules are written out for contributors in docs/testing.md ("The docs' commands run").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

# The programs whose lines are commands (after a `$ ` prompt and `VAR=value` prefixes).
COMMAND_WORDS = {"theano-det", "python", "python3", "pip", "make", "docker", "buildah", "apptainer",
                 "sbatch", "bash", "sh"}
# A fenced block with one of these info strings (or none) is shell; ```python and the like are not.
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}
# <!-- doc-test: KIND why --> on the line before a block: the block is not run, for this reason.
MARKER = re.compile(r"<!--\s*doc-test:\s*(?P<kind>[\w-]+)\s*(?P<why>.*?)\s*-->")
MARKER_KINDS = {
    "needs-gpu": "needs an NVIDIA GPU (or the GPU machine's bundle)",
    "needs-docker": "needs Docker, buildah, Apptainer or a SLURM cluster",
    "needs-network": "downloads from PyPI or elsewhere",
    "illustrative": "a synopsis, or placeholders that stand for the reader's own files and values",
    "covered": "runs elsewhere, named in the reason (the test suite itself, another test)",
    "manual": "a developer's tool run by hand (a benchmark): minutes of CPU, read by a person",
}


@dataclass
class Block:
    path: Path
    line: int  # of the block's first line
    lines: list  # the block's text, indentation removed
    marker: tuple | None  # (kind, why) of the marker right before it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_console(self) -> bool:
        """A transcript: `$ command` lines, each followed by the output it printed."""
        return any(line.startswith("$ ") for line in self.lines)

    @property
    def is_command(self) -> bool:
        return bool(self.lines) and (self.lines[0].startswith("#!") or any(map(is_command_line, self.lines)))


def is_command_line(line: str) -> bool:
    if line.startswith("$ "):
        return True
    words = re.sub(r"^(?:[A-Za-z_]\w*=\S*\s+)+", "", line.strip()).split()  # VAR=value prefixes
    return bool(words) and (words[0] in COMMAND_WORDS or words[0].startswith((".venv/", "./", "../")))


def code_blocks(path: Path) -> list:
    """The shell code blocks of a Markdown page: fenced (no info string or a shell one) and
    indented (four spaces, after a blank line), each with the doc-test marker before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, number = [], 0
    while number < len(lines):
        line = lines[number]
        fence = re.match(r"^(`{3,})\s*(\S*)", line)
        if fence:
            end = next((i for i in range(number + 1, len(lines)) if lines[i].startswith(fence.group(1))), len(lines))
            if fence.group(2) in SHELL_FENCES:
                blocks.append(Block(path, number + 2, lines[number + 1:end], marker_before(lines, number)))
            number = end + 1
            continue
        if line.startswith("    ") and line.strip() and (number == 0 or not lines[number - 1].strip()):
            end = number
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = [text[4:] for text in lines[number:end]]
            while body and not body[-1].strip():
                body.pop()
            blocks.append(Block(path, number + 1, body, marker_before(lines, number)))
            number = end
            continue
        number += 1
    return blocks


def marker_before(lines: list, index: int) -> tuple | None:
    """The doc-test marker on the last non-blank line before lines[index], if any."""
    for line in reversed(lines[:index]):
        if line.strip():
            found = MARKER.fullmatch(line.rstrip())  # at the line's start: an indented one is an example
            return (found.group("kind"), found.group("why")) if found else None
    return None


def stray_markers(path: Path) -> list:
    """Line numbers of doc-test markers that are not right before a code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = {block.line - (2 if lines[block.line - 2].startswith("```") else 1) for block in code_blocks(path)}
    found = []
    for number, line in enumerate(lines):
        if MARKER.match(line):
            following = next((i for i in range(number + 1, len(lines)) if lines[i].strip()), None)
            if following not in starts:
                found.append(number + 1)
    return found
