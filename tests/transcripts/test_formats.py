"""Each harness's transcript format, read from the files a real turn of the pinned version wrote
(tests/fixtures/transcripts, made by tests/live/make_transcript_fixtures.py), and found where
that harness keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard.errors import NotFound, UserError
from switchboard.transcripts import formats, locate
from switchboard.transcripts.shapes import Message, group, summarised

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"
# The scripted turn of tests/live (drivers.PROMPT, standin.FINAL).
PROMPT = "Run `echo hi` in the shell, then say what it printed."
FINAL = "All done: the command printed hi."
# harness -> (its session id in the fixture, the name of its shell tool)
SESSIONS = {
    "claude": ("ffade1c0-7f81-4b55-8c31-3de5cd1d95d1", "Bash"),
    "codex": ("01a24da3-4580-7821-93cc-ad50c179aa47", "exec_command"),
    "gemini": ("e276f32c-08df-4360-82ff-0ba00917ea6e", "run_shell_command"),
    "opencode": ("ses_db25ca17affe4MGrTzijJiEg2O", "bash"),
    "pi": ("01a24da3-6f17-7178-abf5-888c9efa139b", "bash"),
}


def _find(harness: str, home: Path = FIXTURES) -> Path:
    session = SESSIONS[harness][0]
    root = locate.roots(harness, {"HOME": str(home / harness)})
    return locate.find(harness, session, str(root))


@pytest.mark.parametrize("harness", sorted(SESSIONS))
def test_formats_real_turn_reads_as_one_exchange_with_its_tool_call(harness: str) -> None:
    """The pinned harness's own file of the scripted turn is one exchange: the prompt, the
    shell call with its output, and the final answer."""
    session, shell = SESSIONS[harness]
    messages = formats.read(harness, _find(harness), session)
    [exchange] = group(messages)
    assert exchange.n == 1
    assert exchange.prompt == PROMPT
    assert exchange.reply == FINAL
    calls = [tool for message in exchange.messages for tool in message.tools]
    assert [(c.name, c.input) for c in calls] == [(shell, "echo hi")]
    assert "hi" in calls[0].output
    assert not calls[0].error
    assert exchange.ts.startswith("2026-") and exchange.end >= exchange.ts


@pytest.mark.parametrize("harness", sorted(SESSIONS))
def test_formats_locate_finds_the_session_under_the_harness_root(harness: str) -> None:
    """Given only the session id and the harness's root, the session's file is found; an
    unknown session is NotFound."""
    path = _find(harness)
    assert path.is_file()
    root = locate.roots(harness, {"HOME": str(FIXTURES / harness)})
    if harness != "opencode":  # one database holds every session
        with pytest.raises(NotFound):
            locate.find(harness, "00000000-0000-0000-0000-000000000000", str(root))
    with pytest.raises(NotFound):
        locate.find(harness, "../../etc/passwd", str(root.parent / "nowhere"))


def test_formats_opencode_other_session_is_empty() -> None:
    """OpenCode's database answers for the asked session only."""
    assert formats.read("opencode", _find("opencode"), "ses_other") == []


def test_formats_unknown_harness_is_a_clear_error(tmp_path: Path) -> None:
    """A harness without a transcript format is refused by name."""
    with pytest.raises(UserError, match="cursor"):
        formats.read("cursor", tmp_path / "x.jsonl")


def test_formats_half_written_last_line_is_skipped(tmp_path: Path) -> None:
    """A file cut in the middle of a line (the harness still writing) reads up to that line."""
    source = _find("claude")
    data = source.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data + b'{"type": "user", "message": {"role": "user", "content": "ha')
    assert group(formats.read("claude", cut)) == group(formats.read("claude", source))


def test_formats_large_file_is_read_from_its_end(tmp_path: Path) -> None:
    """Past ``max_bytes`` only the file's end is read, from a whole line on."""
    lines = [
        json.dumps(
            {
                "type": "user",
                "timestamp": f"2026-01-01T00:00:{i:02d}Z",
                "message": {"role": "user", "content": f"prompt {i}"},
            }
        )
        for i in range(50)
    ]
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    messages = formats.read("claude", path, max_bytes=len(lines[0]) * 10)
    assert 5 <= len(messages) <= 10
    assert messages[-1].text == "prompt 49"


def test_formats_claude_split_assistant_message_is_one_message(tmp_path: Path) -> None:
    """Claude Code writes one API message as several entries of one ``message.id``: they are
    one message; sidechain and meta entries are not the conversation."""
    entries = [
        {"type": "user", "message": {"role": "user", "content": "go"}},
        {"type": "user", "isMeta": True, "message": {"role": "user", "content": "caveat"}},
        {"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "a"}]}},
        {"type": "assistant", "message": {"id": "m1", "content": [
            {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/x"}}]}},
        {"type": "assistant", "isSidechain": True,
         "message": {"id": "m9", "content": [{"type": "text", "text": "sub"}]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}]}},
    ]  # fmt: skip
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    [exchange] = group(formats.read("claude", path))
    assert [m.role for m in exchange.messages] == ["user", "assistant"]
    [reply] = exchange.messages[1:]
    assert reply.text == "a"
    assert [(t.name, t.input, t.output, t.error) for t in reply.tools] == [
        ("Read", "/x", "boom", True)
    ]


def test_formats_gemini_rewind_drops_what_follows(tmp_path: Path) -> None:
    """Gemini CLI's ``$rewindTo`` drops that message and the later ones; a record of an id seen
    before replaces it in place."""
    records = [
        {"sessionId": "s", "projectHash": "h"},
        {"id": "1", "type": "user", "content": [{"text": "first"}]},
        {"id": "2", "type": "gemini", "content": "draft"},
        {"id": "2", "type": "gemini", "content": "answer one"},
        {"id": "3", "type": "user", "content": [{"text": "second"}]},
        {"id": "4", "type": "gemini", "content": "answer two"},
        {"$rewindTo": "3"},
        {"id": "5", "type": "user", "content": [{"text": "second, again"}]},
    ]
    path = tmp_path / "session.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    exchanges = group(formats.read("gemini", path))
    assert [(e.prompt, e.reply) for e in exchanges] == [
        ("first", "answer one"),
        ("second, again", ""),
    ]


def test_formats_pi_reads_the_branch_of_the_last_entry(tmp_path: Path) -> None:
    """A Pi session is a tree: the conversation is the path to its last entry, not every
    entry of the file."""

    def message(id_: str, parent: str | None, role: str, text: str) -> dict[str, object]:
        body = {"role": role, "content": [{"type": "text", "text": text}]}
        return {"type": "message", "id": id_, "parentId": parent, "message": body}

    entries = [
        {"type": "session", "id": "s"},
        message("a", None, "user", "start"),
        message("b", "a", "assistant", "abandoned branch"),
        message("c", "a", "assistant", "kept branch"),
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    [exchange] = group(formats.read("pi", path))
    assert exchange.reply == "kept branch"
    assert len(exchange.messages) == 2


def test_formats_codex_injected_context_is_no_prompt() -> None:
    """Codex's environment context (a user message the harness writes) opens no exchange."""
    session = SESSIONS["codex"][0]
    messages = formats.read("codex", _find("codex"), session)
    assert [m.role for m in messages] == ["user", "assistant", "assistant"]


def test_formats_group_numbers_exchanges_and_summaries_clip() -> None:
    """Each user message opens the next exchange; a preamble before the first opens #1;
    summaries cut long texts and tool outputs."""
    messages = [
        Message("assistant", "preamble"),
        Message("user", "one", "t1"),
        Message("assistant", "x" * 5000, "t2"),
        Message("user", "two", "t3"),
    ]
    exchanges = group(messages)
    assert [(e.n, e.prompt) for e in exchanges] == [(1, ""), (2, "one"), (3, "two")]
    assert exchanges[1].end == "t2"
    short = summarised(exchanges[1])
    assert len(short.messages[1].text) <= 800 and short.messages[1].text.endswith("…")


def test_formats_gemini_own_context_is_not_the_prompt(tmp_path: Path) -> None:
    """What Gemini CLI adds to a user turn (its session context, hooks' context) is not the
    prompt; a turn of nothing else opens no exchange."""
    records = [
        {"id": "0", "type": "user", "content": [{"text": "<session_context>x</session_context>"}]},
        {"id": "1", "type": "user", "content": [
            {"text": "<hook_context>You are agent luna</hook_context>\n\nfix the bug"}]},
        {"id": "2", "type": "gemini", "content": "fixed"},
    ]  # fmt: skip
    path = tmp_path / "session.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    [exchange] = group(formats.read("gemini", path))
    assert (exchange.prompt, exchange.reply) == ("fix the bug", "fixed")
