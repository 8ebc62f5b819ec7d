"""Docs are tested: the state table in docs/protocol.md is the one the code generates."""

from __future__ import annotations

import runpy
from pathlib import Path

from switchboard.errors import ByeCode
from switchboard.proto.session import transition_table

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCRIPT = runpy.run_path(str(DOCS / "make_state_table.py"))


def test_protocol_doc_state_table_matches_generator() -> None:
    """docs/protocol.md holds exactly what make_state_table.py prints, between its markers."""
    text = (DOCS / "protocol.md").read_text()
    start, end = SCRIPT["START"], SCRIPT["END"]
    assert text.count(start) == text.count(end) == 1
    between = text.split(start, 1)[1].split(end, 1)[0]
    assert between == "\n" + SCRIPT["state_table"](), (
        "state table out of date: run python docs/make_state_table.py --write"
    )


def test_protocol_doc_state_table_has_a_row_per_transition() -> None:
    """The generated table has one row per entry of transition_table()."""
    rows = SCRIPT["state_table"]().splitlines()[2:]
    assert len(rows) == len(transition_table())


def test_protocol_doc_replace_table_keeps_the_rest() -> None:
    """Rewriting the table leaves the text around the markers untouched."""
    start, end = SCRIPT["START"], SCRIPT["END"]
    text = f"before\n{start}\nold\n{end}\nafter\n"
    assert SCRIPT["replace_table"](text, "new\n") == f"before\n{start}\nnew\n{end}\nafter\n"


def test_protocol_doc_every_bye_code_is_documented() -> None:
    """Each ByeCode appears in protocol.md with its number and name."""
    text = (DOCS / "protocol.md").read_text()
    for code in ByeCode:
        assert f"| {code.value} | `{code.name}` |" in text
