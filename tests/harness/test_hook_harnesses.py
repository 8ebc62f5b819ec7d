"""Each harness adapter: documented payloads in, that harness's JSON answer out (real daemon)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness_kit import Device, Session, events_of

# (harness, session-start event or None, mid-turn event, its answer shape, stop event, stop shape)
CASES = [
    ("claude", "SessionStart", "PostToolUse", "additionalContext", "Stop", "block"),
    ("codex", "SessionStart", "PostToolUse", "additionalContext", "Stop", "block"),
    ("gemini", "SessionStart", "AfterTool", "additionalContext", "AfterAgent", "deny"),
    ("antigravity", "PreInvocation:First", "PreInvocation", "injectSteps", None, None),
    ("cursor", "sessionStart", "postToolUse", "additional_context", "stop", "followup_message"),
    ("opencode", "session.created", "tool.execute.after", "context", "session.idle", "prompt"),
    ("pi", "session_start", "tool_result", "context", "agent_end", "prompt"),
]
# What Codex accepts (its output schemas forbid unknown keys).
CODEX_KEYS = {"continue", "decision", "reason", "stopReason", "suppressOutput", "systemMessage"}
CODEX_SPECIFIC_KEYS = {"hookEventName", "additionalContext"}


def _mid_turn(out: dict[str, Any], shape: str) -> str:
    if shape == "additionalContext":
        return str(out["hookSpecificOutput"]["additionalContext"])
    if shape == "injectSteps":
        return str(out["injectSteps"][0]["ephemeralMessage"])
    return str(out[shape])


@pytest.mark.parametrize(("harness", "start", "tool", "shape", "stop", "stop_shape"), CASES)
def test_harness_hook_delivers_mid_turn_in_its_own_shape(
    device: Device,
    harness: str,
    start: str | None,
    tool: str,
    shape: str,
    stop: str | None,
    stop_shape: str | None,
) -> None:
    """A pending message comes back in the harness's documented answer shape, exactly once."""
    agent = Session(device, harness, f"{harness}-1", agent=f"{harness}-agent")
    if start:
        assert agent.hook(start).code == 0
    device.call("send", agent="nova", to=[f"@{harness}-agent"], text=f"hello {harness}")
    run = agent.hook(tool)
    assert run.code == 0, run.stderr
    text = _mid_turn(run.out, shape)
    assert f"hello {harness}" in text
    assert "<switchboard-inbox-" in text
    if harness in ("claude", "codex", "gemini"):
        assert run.out["hookSpecificOutput"]["hookEventName"] == tool
    assert agent.hook(tool).out == {}
    if stop is None:
        return
    device.call("send", agent="nova", to=[f"@{harness}-agent"], text=f"bye {harness}")
    stopped = agent.hook(stop)
    if stop_shape in ("block", "deny"):
        assert stopped.out["decision"] == stop_shape
        assert f"bye {harness}" in stopped.out["reason"]
    else:
        assert f"bye {harness}" in stopped.out[stop_shape]


def test_codex_answers_only_keys_its_schema_allows(device: Device) -> None:
    """Codex rejects unknown output keys: every answer stays within its documented schema."""
    agent = Session(device, "codex", "codex-schema", agent="cx")
    runs = [agent.hook("SessionStart")]
    device.call("send", agent="nova", to=["@cx"], text="schema check")
    runs.append(agent.hook("PostToolUse"))
    device.call("send", agent="nova", to=["@cx"], text="schema check 2")
    runs.append(agent.hook("Stop"))
    for run in runs:
        assert set(run.out) - {"hookSpecificOutput"} <= CODEX_KEYS
        assert set(run.out.get("hookSpecificOutput", {})) <= CODEX_SPECIFIC_KEYS
    assert runs[2].out["decision"] == "block"


def test_codex_apply_patch_and_exit_status_are_recorded(device: Device) -> None:
    """apply_patch file headers become file_edited; a known exit status is kept."""
    agent = Session(device, "codex", "codex-act", agent="cx2")
    agent.hook("PostToolUse")
    agent.hook("PostToolUse:Bash")
    assert events_of(device, "file_edited")[-1]["data"]["path"] == "src/lib.rs"
    command = events_of(device, "command_run")[-1]["data"]
    assert command == {"command": "cargo test", "exit_status": 101}


def test_gemini_records_shell_and_compaction(device: Device) -> None:
    """run_shell_command becomes command_run; a manual PreCompress starts a new context, an
    automatic one (fired at every compression check, compressing or not) does not."""
    agent = Session(device, "gemini", "gem-act", agent="gm")
    agent.hook("SessionStart")
    agent.hook("AfterTool:Shell")
    assert agent.hook("PreCompress").out == {}
    assert events_of(device, "command_run")[-1]["data"]["command"] == "npm test"
    assert not events_of(device, "context_compacted")
    agent.hook("PreCompress:Manual")
    assert events_of(device, "context_compacted")[-1]["data"]["session"] == "gem-act"


def test_antigravity_tool_and_stop_record_but_never_swallow_messages(device: Device) -> None:
    """agy's PostToolUse/Stop answers cannot carry text: they record and leave messages pending."""
    agent = Session(device, "antigravity", "agy-1", agent="ag")
    agent.hook("PreInvocation:First")
    device.call("send", agent="nova", to=["@ag"], text="wait for the review")
    assert agent.hook("PostToolUse").out == {}
    assert agent.hook("Stop").out == {}
    assert events_of(device, "command_run")[-1]["data"]["command"] == "go test ./..."
    run = agent.hook("PreInvocation")
    assert "wait for the review" in run.out["injectSteps"][0]["ephemeralMessage"]


def test_cursor_after_file_edit_records_the_file(device: Device) -> None:
    """afterFileEdit records file_edited with Cursor's file_path."""
    agent = Session(device, "cursor", "cur-1", agent="cu", cwd="/c")
    agent.hook("afterFileEdit")
    assert events_of(device, "file_edited")[-1]["data"]["path"] == "/c/src/module.ts"


def test_pi_is_told_to_answer_through_the_shell(device: Device) -> None:
    """Pi has no MCP: the wrapper tells the agent the command line to answer with."""
    agent = Session(device, "pi", "pi-1", agent="pie")
    agent.hook("session_start")
    device.call("send", agent="nova", to=["@pie"], text="ping")
    text = agent.hook("poll").out["prompt"]
    assert "switchboard --as pie send" in text


def test_opencode_poll_prompts_an_idle_session(device: Device) -> None:
    """The OpenCode plugin's poll gets a prompt to start a turn when a message waits."""
    agent = Session(device, "opencode", "oc-1", agent="oc")
    assert agent.hook("poll").out == {}
    device.call("send", agent="nova", to=["@oc"], text="are you there?", priority="urgent")
    out = agent.hook("poll").out
    assert "are you there?" in out["prompt"]
    assert out["urgent"] is True
    assert json.dumps(out).count("are you there?") == 1
