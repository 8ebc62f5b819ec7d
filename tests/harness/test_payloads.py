"""Hook adapters as pure functions: fixture payloads to requests, answers to harness JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard.harnesses import payloads
from switchboard.harnesses.hook import parse_payload

FIXTURES = Path(__file__).with_name("fixtures")
# Documented payloads we answer with the no-op without asking the daemon.
IGNORED = {("gemini", "PreCompress")}


def _fixtures() -> list[tuple[str, str, dict]]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        for event, payload in json.loads(path.read_text()).items():
            if not event.startswith("_") and (path.stem, event) not in IGNORED:
                out.append((path.stem, event.split(":")[0], payload))
    return out


@pytest.mark.parametrize(("harness", "event", "payload"), _fixtures())
def test_payloads_every_documented_event_maps_to_a_request(
    harness: str, event: str, payload: dict
) -> None:
    """Each fixture payload maps to a request with its session, kind and directory."""
    request = payloads.build_request(harness, event, payload)
    assert request is not None
    assert request["session"] == "SESSION"
    assert request["kind"] in ("session_start", "prompt", "tool", "stop", "compact",
                               "session_end", "poll", "idle_wait", "permission")  # fmt: skip
    assert request["harness"] == harness


def test_payloads_gemini_automatic_precompress_is_ignored() -> None:
    """Gemini's "auto" PreCompress fires at every compression check, so it is no compaction."""
    payload = json.loads((FIXTURES / "gemini.json").read_text())["PreCompress"]
    assert payload["trigger"] == "auto"
    assert payloads.build_request("gemini", "PreCompress", payload) is None
    manual = payloads.build_request("gemini", "PreCompress", {**payload, "trigger": "manual"})
    assert manual is not None and manual["kind"] == "compact"


def test_payloads_prompt_is_sent_only_when_recording_is_on() -> None:
    """The prompt text leaves the hook only with record_prompts."""
    payload = {"session_id": "s", "prompt": "secret plan"}
    assert "prompt" not in payloads.build_request("claude", "UserPromptSubmit", payload)  # type: ignore[operator]
    recorded = payloads.build_request("claude", "UserPromptSubmit", payload, record_prompts=True)
    assert recorded is not None and recorded["prompt"] == "secret plan"


def test_payloads_our_own_tools_are_not_recorded_as_activity() -> None:
    """Calls of our MCP tools are not file edits or commands."""
    payload = {
        "session_id": "s",
        "tool_name": "mcp__switchboard__send",
        "tool_input": {"command": "x"},
    }
    request = payloads.build_request("claude", "PostToolUse", payload)
    assert request is not None and request["files"] == [] and request["command"] is None


@pytest.mark.parametrize(
    ("harness", "event", "answer", "expected"),
    [
        (
            "claude",
            "PostToolUse",
            {"text": "T"},
            {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": "T"}},
        ),
        ("claude", "Stop", {"text": "T", "block": True}, {"decision": "block", "reason": "T"}),
        ("claude", "Stop", {"text": "T", "block": False}, {}),
        (
            "codex",
            "UserPromptSubmit",
            {"text": "T"},
            {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": "T"}},
        ),
        ("gemini", "AfterAgent", {"text": "T", "block": True}, {"decision": "deny", "reason": "T"}),
        (
            "gemini",
            "BeforeAgent",
            {"text": "T"},
            {"hookSpecificOutput": {"hookEventName": "BeforeAgent", "additionalContext": "T"}},
        ),
        (
            "antigravity",
            "PreInvocation",
            {"text": "T"},
            {"injectSteps": [{"ephemeralMessage": "T"}]},
        ),
        ("cursor", "postToolUse", {"text": "T"}, {"additional_context": "T"}),
        ("cursor", "stop", {"text": "T", "block": True}, {"followup_message": "T"}),
        ("opencode", "tool.execute.after", {"text": "T"}, {"context": "T"}),
        (
            "pi",
            "agent_end",
            {"text": "T", "urgent": True, "handover": "h1"},
            {"prompt": "T", "urgent": True, "handover": "h1"},
        ),
        ("claude", "PostToolUse", {"text": ""}, {}),
        ("claude", "PostToolUse", None, {}),
        (
            "claude",
            "PermissionRequest",
            {"answer": "allow", "by": "boss:x"},
            {
                "hookSpecificOutput": {
                    "hookEventName": "PermissionRequest",
                    "decision": {"behavior": "allow"},
                }
            },
        ),
        (
            "claude",
            "PermissionRequest",
            {"answer": "deny", "reason": "not on main"},
            {
                "hookSpecificOutput": {
                    "hookEventName": "PermissionRequest",
                    "decision": {"behavior": "deny", "message": "not on main"},
                }
            },
        ),
        ("claude", "PermissionRequest", {"answer": "timeout", "reason": "no answer"}, {}),
        ("claude", "PermissionRequest", {"answer": "expired"}, {}),
        (
            "codex",
            "PermissionRequest",
            {"answer": "deny", "reason": ""},
            {
                "hookSpecificOutput": {
                    "hookEventName": "PermissionRequest",
                    "decision": {"behavior": "deny", "message": "denied through Switchboard"},
                }
            },
        ),
        ("claude", "PermissionRequest", None, {}),
    ],
)
def test_payloads_render_each_harness_shape(
    harness: str, event: str, answer: dict | None, expected: dict
) -> None:
    """The daemon's answer becomes exactly the JSON the harness documents (or its no-op)."""
    out, code, _ = payloads.render(harness, event, answer)
    assert (out, code) == (expected, 0)


def test_payloads_permission_request_carries_what_it_asks() -> None:
    """Claude's PermissionRequest asks the daemon with the tool and its command (or path),
    records nothing as activity, and delivers no messages."""
    payload = json.loads((FIXTURES / "claude.json").read_text())["PermissionRequest"]
    request = payloads.build_request("claude", "PermissionRequest", payload)
    assert request is not None
    assert (request["kind"], request["tool"], request["command"]) == (
        "permission", "Bash", "rm -rf build"
    )  # fmt: skip
    assert (request["deliver"], request["hold"]) == (False, False)
    write = {**payload, "tool_name": "Write", "tool_input": {"file_path": "/etc/hosts"}}
    asked = payloads.build_request("claude", "PermissionRequest", write)
    assert asked is not None and asked["files"] == ["/etc/hosts"] and asked["command"] is None


def test_payloads_idle_wake_uses_exit_2_and_stderr() -> None:
    """Claude's asyncRewake: a message wakes the session by exit 2 with it on stderr."""
    assert payloads.render("claude", "Idle", {"text": "T"}) == ({}, 2, "T")
    assert payloads.render("claude", "Idle", {"text": ""}) == ({}, 0, "")


def test_payloads_salvage_session_from_truncated_input() -> None:
    """A truncated payload still yields its session id; garbage yields nothing."""
    data = b'{"session_id": "abc-1", "cwd": "/r", "tool_input": {"content": "xxxxx'
    assert parse_payload(data, complete=False) == (
        {"session_id": "abc-1", "cwd": "/r"},
        "truncated or oversized payload",
    )
    assert parse_payload(b"\x00\x01", complete=True) == ({}, "malformed JSON")
