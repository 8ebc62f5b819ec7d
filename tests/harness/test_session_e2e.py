"""A scripted Claude Code session on one device, messaged from another through a relay."""

from __future__ import annotations

import json

from harness_kit import Device, Session, fixture, start_hook, timeout


def _wait_agent(device: Device, name: str) -> None:
    device.wait_events(1, type="agent_registered", where=f"json_extract(data, '$.name') = '{name}'")


def _send(device: Device, sender: str, to: str, text: str) -> dict:
    return device.call("send", agent=sender, to=[to], text=text, wait=5)


def _arrived(device: Device, count: int) -> None:
    device.wait_events(count, type="message_posted")


def test_session_e2e_mid_turn_idle_and_receipts(pair: tuple[Device, Device]) -> None:
    """Mid-turn messages ride the next PostToolUse, an idle one blocks the Stop, receipts return."""
    alpha, beta = pair
    luna = Session(beta, "claude", "e2e-1", agent="luna")
    luna.hook("SessionStart")
    _wait_agent(alpha, "luna")
    alpha.call("register", agent="nova")
    luna.hook("UserPromptSubmit")
    assert luna.hook("PostToolUse").out == {}

    sent = _send(alpha, "nova", f"@luna:{beta.short}", "mid-turn: use the v2 endpoint")
    assert sent["recipients"][0]["state"] in ("delivered", "queued")
    _arrived(beta, 1)
    injected = luna.hook("PostToolUse:Bash")
    assert "use the v2 endpoint" in injected.out["hookSpecificOutput"]["additionalContext"]
    receipt = alpha.call("message.wait", id=sent["id"], state="injected", timeout=timeout(20))
    assert receipt["complete"], receipt

    idle = _send(alpha, "nova", "@luna", "while you were finishing: ship it")
    _arrived(beta, 2)
    stop = luna.hook("Stop")
    assert stop.out["decision"] == "block"
    assert "ship it" in stop.out["reason"]
    assert luna.hook("Stop", stop_hook_active=True).out == {}

    beta.call(
        "message.ack",
        agent="luna",
        ids=[m["id"] for m in beta.call("inbox", agent="luna", peek=True)],
    )
    for message_id in (sent["id"], idle["id"]):
        read = alpha.call("message.wait", id=message_id, state="read", timeout=timeout(20))
        assert read["complete"], read
        assert read["recipients"][0]["read_ts"]


def test_session_e2e_idle_hook_wakes_agent(pair: tuple[Device, Device]) -> None:
    """The asyncRewake Idle hook waits after Stop and exits 2 with a message sent meanwhile."""
    alpha, beta = pair
    luna = Session(beta, "claude", "e2e-2", agent="luna")
    luna.hook("SessionStart")
    _wait_agent(alpha, "luna")
    luna.hook("Stop")
    payload = fixture("claude", "Idle", "e2e-2")
    waiting = start_hook(luna.env, "claude", "Idle", payload, "--wait", "60")
    _send(alpha, "nova", "@luna", "wake up: CI is red")
    _, stderr = waiting.communicate(timeout=timeout(60))
    assert waiting.returncode == 2
    assert "CI is red" in stderr.decode()
    assert luna.hook("PostToolUse").out == {}


def test_session_e2e_idle_hook_does_not_wait_in_print_mode(device: Device) -> None:
    """Under ``claude -p`` (entrypoint sdk-cli) the idle hook answers at once: the session
    ends with its turn, and Claude Code would wait for the hook before exiting."""
    luna = Session(device, "claude", "e2e-7", agent="luna")
    luna.hook("SessionStart")
    luna.hook("Stop")
    payload = fixture("claude", "Idle", "e2e-7")
    env = {**luna.env, "CLAUDE_CODE_ENTRYPOINT": "sdk-cli"}
    waiting = start_hook(env, "claude", "Idle", payload, "--wait", "600")
    out, _ = waiting.communicate(timeout=timeout(30))
    assert waiting.returncode == 0
    assert json.loads(out) == {}


def test_session_e2e_new_prompt_supersedes_idle_wait(device: Device) -> None:
    """A new turn ends the idle wait quietly (exit 0, no-op) instead of waking the agent."""
    luna = Session(device, "claude", "e2e-3", agent="luna")
    luna.hook("SessionStart")
    luna.hook("Stop")
    payload = fixture("claude", "Idle", "e2e-3")
    waiting = start_hook(luna.env, "claude", "Idle", payload, "--wait", "60")
    luna.hook("UserPromptSubmit")  # before or after the waiter registered: it ends either way
    out, _ = waiting.communicate(timeout=timeout(60))
    assert waiting.returncode == 0
    assert json.loads(out) == {}


def test_session_e2e_identity_survives_restart_and_resume(pair: tuple[Device, Device]) -> None:
    """An auto-named agent resumed after a daemon restart keeps its name and gets its mail."""
    alpha, beta = pair
    first = Session(beta, "claude", "e2e-4")
    start = first.hook("SessionStart")
    name = start.out["hookSpecificOutput"]["additionalContext"].split("You are agent ")[1]
    name = name.split(":")[0]
    _wait_agent(alpha, name)
    beta.stop()
    _send(alpha, "nova", f"@{name}", "sent while your device was down")
    beta.start()
    # The resumed session reads the mail beta holds: wait until it has replicated there.
    beta.wait_events(1, type="message_posted", where="data LIKE '%while your device was down%'")
    resumed = Session(beta, "claude", "e2e-4")  # a new harness process resuming the session
    run = resumed.hook("SessionStart", source="resume")
    text = run.out["hookSpecificOutput"]["additionalContext"]
    assert f"You are agent {name}:" in text
    assert "sent while your device was down" in text


def test_session_e2e_relaunch_with_same_name_gets_unread_messages(device: Device) -> None:
    """A relaunched agent (new session, same SWITCHBOARD_AGENT) gets unread messages in full."""
    old = Session(device, "claude", "e2e-5", agent="luna")
    old.hook("SessionStart")
    device.call("send", agent="nova", to=["@luna"], text="review my PR")
    assert "review my PR" in old.context_text(old.hook("PostToolUse"))
    old.hook("SessionEnd")
    new = Session(device, "claude", "e2e-6", agent="luna")
    assert "review my PR" in new.context_text(new.hook("SessionStart"))
