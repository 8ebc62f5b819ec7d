"""Claude Code's hooks against a real daemon: registration, injection points, Stop blocking."""

from __future__ import annotations

from harness_kit import Device, Session, events_of


def _send(device: Device, sender: str, to: str, text: str) -> int:
    result = device.call("send", agent=sender, to=[to], text=text)
    return int(result["id"])


def test_claude_session_start_registers_agent_and_binds_session(device: Device) -> None:
    """SessionStart registers the named agent with harness and directory and tells it who it is."""
    luna = Session(device, "claude", "sess-1", agent="luna", cwd="/work/repo")
    run = luna.hook("SessionStart")
    assert run.code == 0
    context = run.out["hookSpecificOutput"]["additionalContext"]
    assert run.out["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert f"luna:{device.short}" in context
    agents = {a["name"]: a for a in device.call("agents")}
    assert agents["luna"]["harness"] == "claude"
    assert agents["luna"]["cwd"] == "/work/repo"
    started = events_of(device, "session_started")
    assert started[-1]["data"]["session"] == "sess-1"


def test_claude_post_tool_use_injects_pending_message_once(device: Device) -> None:
    """A message sent mid-turn appears at the next PostToolUse, and never twice in that context."""
    luna = Session(device, "claude", "sess-2", agent="luna")
    luna.hook("SessionStart")
    luna.hook("UserPromptSubmit")
    assert luna.hook("PostToolUse").out == {}
    message_id = _send(device, "nova", "@luna", "please rebase on main")
    first = luna.hook("PostToolUse:Bash")
    text = first.out["hookSpecificOutput"]["additionalContext"]
    assert "please rebase on main" in text
    assert f'id="{message_id}"' in text
    assert first.out["hookSpecificOutput"]["hookEventName"] == "PostToolUse"
    assert luna.hook("PostToolUse").out == {}
    # The hook settles its delivery once its answer is written: wait for that.
    waited = device.call("message.wait", id=message_id, state="injected", timeout=10)
    assert waited["complete"]
    assert waited["recipients"][0]["state"] == "injected"


def test_claude_user_prompt_submit_injects_pending_message(device: Device) -> None:
    """A message that arrived between turns rides on the next prompt."""
    luna = Session(device, "claude", "sess-3", agent="luna")
    luna.hook("SessionStart")
    _send(device, "nova", "@luna", "the API changed")
    run = luna.hook("UserPromptSubmit")
    assert run.out["hookSpecificOutput"]["hookEventName"] == "UserPromptSubmit"
    assert "the API changed" in run.out["hookSpecificOutput"]["additionalContext"]


def test_claude_stop_blocks_with_pending_messages(device: Device) -> None:
    """A message pending when the agent finishes blocks the stop; with none, the stop proceeds."""
    luna = Session(device, "claude", "sess-4", agent="luna")
    luna.hook("SessionStart")
    luna.hook("UserPromptSubmit")
    assert luna.hook("Stop").out == {}
    _send(device, "nova", "@luna", "one more thing: update the changelog")
    blocked = luna.hook("Stop")
    assert blocked.out["decision"] == "block"
    assert "update the changelog" in blocked.out["reason"]
    assert luna.hook("Stop", stop_hook_active=True).out == {}


def test_claude_hooks_record_activity_without_prompt_text(device: Device) -> None:
    """Edits and commands become events; the prompt text is not recorded by default."""
    luna = Session(device, "claude", "sess-5", agent="luna", cwd="/r")
    luna.hook("SessionStart")
    luna.hook("UserPromptSubmit")
    luna.hook("PostToolUse")
    luna.hook("PostToolUse:Bash")
    luna.hook("Stop")
    edited = events_of(device, "file_edited")[-1]
    # /r is no repository: the edit is keyed by the folder's name, the path inside it.
    assert edited["data"] == {
        "path": "/r/src/parser.py", "tool": "Edit", "repo": "r", "repo_path": "src/parser.py"
    }  # fmt: skip
    assert (
        events_of(device, "command_run")[-1]["data"]["command"] == "pytest -q tests/test_parser.py"
    )
    turn = events_of(device, "turn_started")[-1]
    assert turn["data"]["prompt"] is None
    assert events_of(device, "turn_ended")
    agent = {a["name"]: a for a in device.call("agents")}["luna"]
    assert agent["status"] == "idle"
    assert "parser.py" in agent["summary"]


def test_claude_prompt_recording_is_opt_in(device: Device) -> None:
    """With SWITCHBOARD_RECORD_PROMPTS=1 the prompt text is recorded and becomes the summary."""
    luna = Session(device, "claude", "sess-6", agent="luna")
    luna.device.env["SWITCHBOARD_RECORD_PROMPTS"] = "1"
    try:
        luna.hook("UserPromptSubmit")
    finally:
        del luna.device.env["SWITCHBOARD_RECORD_PROMPTS"]
    turn = events_of(device, "turn_started")[-1]
    assert turn["data"]["prompt"] == "Refactor the parser and keep the tests green"


def test_claude_compaction_starts_a_new_context(device: Device) -> None:
    """After compaction (SessionStart source=compact) an unread message is offered again."""
    luna = Session(device, "claude", "sess-7", agent="luna")
    luna.hook("SessionStart")
    _send(device, "nova", "@luna", "remember the freeze on Friday")
    assert "freeze on Friday" in luna.context_text(luna.hook("PostToolUse"))
    assert luna.hook("PostToolUse").out == {}
    compacted = luna.hook("SessionStart", source="compact")
    assert events_of(device, "context_compacted")
    assert "freeze on Friday" in luna.context_text(compacted)
    assert luna.hook("PostToolUse").out == {}


def test_claude_session_end_marks_agent_offline(device: Device) -> None:
    """SessionEnd records session_stopped and shows the agent offline."""
    luna = Session(device, "claude", "sess-8", agent="luna")
    luna.hook("SessionStart")
    assert luna.hook("SessionEnd").out == {}
    assert events_of(device, "session_stopped")[-1]["data"]["session"] == "sess-8"
    assert {a["name"]: a for a in device.call("agents")}["luna"]["status"] == "offline"
