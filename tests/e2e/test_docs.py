"""docs/cli.md documents every command, and its ``--help`` blocks match the parser; the Python
API page's example is the file the tests run, and prints what the page says.

Run this file to rewrite the blocks after changing the parser:
``.venv/bin/python tests/e2e/test_docs.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TIMEOUT, command_paths

from switchboard.cli.parser import build_parser
from switchboard.config import load_settings
from switchboard.daemon import process

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "cli.md"
PYTHON_API = ROOT / "docs" / "python-api.md"
EXAMPLE = ROOT / "example" / "python_api.py"
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


def _fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```\n", text, re.S | re.M)


def test_docs_python_api_example_is_the_example_file() -> None:
    """The example on docs/python-api.md is example/python_api.py, verbatim."""
    assert _fenced(PYTHON_API.read_text(), "python") == [EXAMPLE.read_text()]


def test_docs_python_api_example_runs_and_prints_what_the_page_says(short_tmp: Path) -> None:
    """The example runs against a fresh home (its first call starts the daemon) and prints
    the output the page shows."""
    env = {**os.environ, "SWITCHBOARD_HOME": str(short_tmp)}
    env.pop("SWITCHBOARD_AGENT", None)
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True,
            timeout=TIMEOUT * 4, check=False,
        )  # fmt: skip
    finally:
        process.stop(load_settings(env={}, home=short_tmp))
    assert done.returncode == 0, done.stderr
    assert [done.stdout] == _fenced(PYTHON_API.read_text(), "text")


if __name__ == "__main__":
    os.environ.update(COLUMNS=COLUMNS, NO_COLOR="1")
    DOCS.write_text(rewrite(DOCS.read_text()))
    print(f"rewrote {DOCS}")
