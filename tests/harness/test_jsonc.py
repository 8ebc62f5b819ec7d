"""Editing JSON(C) config files as text: comments kept, exact reversal, clear errors (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.harnesses.jsonc import JsoncError, JsonDoc, parse

ORIGINAL = """{
  // user settings
  "theme": "dark", // trailing
  "hooks": {
    "PostToolUse": [
      {"matcher": "Bash", "hooks": [{"type": "command", "command": "echo hi"}]}
    ]
  },
  /* block */ "list": [1, 2,],
}
"""


def test_jsonc_parse_reads_comments_and_trailing_commas() -> None:
    """JSONC parses to the same value JSON would, ignoring comments and trailing commas."""
    value = parse(ORIGINAL).value
    assert value["list"] == [1, 2] and value["theme"] == "dark"


def test_jsonc_edits_keep_comments_and_undo_exactly() -> None:
    """Adding entries keeps every comment; deleting them restores the text byte for byte."""
    doc = JsonDoc(ORIGINAL)
    doc.append(["hooks", "PostToolUse"], {"matcher": "*", "hooks": []})
    doc.append(["hooks", "Stop"], {"hooks": []})
    doc.set(["mcpServers", "switchboard"], {"command": "sb"})
    doc.append(["list"], 3)
    for comment in ("// user settings", "// trailing", "/* block */"):
        assert comment in doc.text
    assert parse(doc.text).value["mcpServers"] == {"switchboard": {"command": "sb"}}
    doc.delete(["list", 2])
    doc.delete(["mcpServers"])
    doc.delete(["hooks", "Stop"])
    doc.delete(["hooks", "PostToolUse", 1])
    assert doc.text == ORIGINAL


def test_jsonc_set_replaces_an_existing_member() -> None:
    """Setting an existing member replaces only its value."""
    doc = JsonDoc('{"a": {"b": 1}, "c": 2}')
    doc.set(["a", "b"], [1, 2])
    assert parse(doc.text).value == {"a": {"b": [1, 2]}, "c": 2}


@pytest.mark.parametrize(
    "text",
    ['{"a": ', '{"a" 1}', "[1, 2]", '{"a": 1} extra', '{"a": /* open', "{'a': 1}"],
)
def test_jsonc_refuses_what_it_cannot_edit_safely(text: str) -> None:
    """Broken or non-object documents raise JsoncError with where it went wrong."""
    with pytest.raises(JsoncError, match=r"line|top level"):
        JsonDoc(text)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=5), values, max_size=4), values, st.integers(0, 4)
)
def test_jsonc_set_then_delete_round_trips(base: dict, value: object, indent: int) -> None:
    """For any document and value, set then delete gives back the original text."""
    text = json.dumps(base, indent=indent or None)
    doc = JsonDoc(text)
    key = "switchboard-test"
    doc.set([key, "x"], value)
    assert parse(doc.text).value[key] == {"x": value}
    doc.delete([key])
    assert parse(doc.text).value == base
    if base:
        assert doc.text == text
