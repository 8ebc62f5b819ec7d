"""docs/cli.md documents every command, and its ``--help`` blocks match the parser.

Run this file to rewrite the blocks after changing the parser:
``.venv/bin/python tests/e2e/test_docs.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import command_paths

from switchboard.cli.parser import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
# The width the help blocks are rendered at, so they don't depend on the terminal.
COLUMNS = "100"
BLOCK = re.compile(r"<!-- help: (?P<path>[^>]*?) -->\n(?P<body>.*?)<!-- /help -->\n", re.S)


def render_help(path: str) -> str:
    """Return the help block for ``switchboard <path>`` (``switchboard``: the usage line only)."""
    parser = build_parser()
    if path == "switchboard":
        return f"```text\n{parser.format_usage()}```\n"
    found = {" ".join(path): sub for path, sub, _ in command_paths(parser)}
    return f"```text\n{found[path].format_help()}```\n"


def rewrite(text: str) -> str:
    """Return ``text`` with every help block regenerated."""
    return BLOCK.sub(
        lambda m: f"<!-- help: {m['path']} -->\n{render_help(m['path'])}<!-- /help -->\n", text
    )


ALL = sorted((" ".join(path), help) for path, _, help in command_paths(build_parser()))


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", COLUMNS)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize(("name", "help"), ALL, ids=[name for name, _ in ALL])
def test_docs_document_every_command(name: str, help: str | None) -> None:
    """Each command has help text, a section in docs/cli.md and a help block there."""
    assert help, f"{name} has no help text"
    text = DOCS.read_text()
    assert f"### `switchboard {name}`" in text
    assert f"<!-- help: {name} -->" in text


def test_docs_help_blocks_match_the_parser() -> None:
    """Every generated ``--help`` block is current (whitespace aside, which wraps by version)."""
    text = DOCS.read_text()
    blocks = list(BLOCK.finditer(text))
    assert blocks
    for match in blocks:
        expected = render_help(match["path"])
        assert match["body"].split() == expected.split(), (
            f"help block for {match['path']!r} is stale: run python {__file__}"
        )


if __name__ == "__main__":
    os.environ.update(COLUMNS=COLUMNS, NO_COLOR="1")
    DOCS.write_text(rewrite(DOCS.read_text()))
    print(f"rewrote {DOCS}")
