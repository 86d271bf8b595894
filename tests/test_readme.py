"""The README is the front door: its Python examples run, and its `featspace ...` commands parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
SHELL_BLOCKS = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", TEXT, flags=re.S)


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
