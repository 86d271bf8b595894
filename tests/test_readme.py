"""The README is the front door: its Python examples run, and its `featspace ...` commands parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, fences paired in order."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body) + "\n"))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


BLOCKS = _fenced_blocks(TEXT)
PYTHON_BLOCKS = [body for language, body in BLOCKS if language == "python"]
SHELL_BLOCKS = [body for language, body in BLOCKS if language in ("", "bash", "sh", "console")]


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_examples_run(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "readme"})


def _featspace_commands() -> list[list[str]]:
    commands = []
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            line = re.sub(r"^\$\s*", "", line)
            for prefix in (".venv/bin/featspace ", "featspace "):
                if line.startswith(prefix):
                    commands.append(shlex.split(line[len(prefix):]))
    return commands


def test_readme_has_examples():
    assert PYTHON_BLOCKS and "make demo" in TEXT and "make test" in TEXT


@pytest.mark.parametrize("argv", _featspace_commands(), ids=lambda a: " ".join(a)[:60])
def test_featspace_commands_parse(argv):
    from featspace.cli import build_parser

    build_parser().parse_args(argv)
