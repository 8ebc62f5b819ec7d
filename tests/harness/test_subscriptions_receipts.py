"""`events sub` delivers matching events from any device; `send --wait` waits for receipts."""

from __future__ import annotations

import json
import subprocess

from harness_kit import PY, Device, Session, timeout


def test_events_sub_file_glob_delivers_edits_from_another_device(
    pair: tuple[Device, Device],
) -> None:
    """An agent subscribed to '*.py' edits sees another device's .py edit, not its .md edit."""
    alpha, beta = pair
    luna = Session(beta, "claude", "sub-1", agent="luna")
    luna.hook("SessionStart")
    done = beta.cli("events", "sub", "--file", "*.py", agent="luna")
    assert "subscription #" in done.stdout
    nova = Session(alpha, "claude", "sub-2", agent="nova", cwd="/a")
    nova.hook("SessionStart")
    nova.hook("PostToolUse", tool_input={"file_path": "/a/README.md"})
    nova.hook("PostToolUse", tool_input={"file_path": "/a/src/core.py"})
    beta.wait_events(2, type="file_edited")
    text = luna.context_text(luna.hook("PostToolUse:Bash"))
    assert "/a/src/core.py" in text and f"nova:{alpha.short}" in text
    assert "README.md" not in text
    assert luna.hook("PostToolUse:Bash").out == {}  # each event once
    listed = json.loads(beta.cli("events", "subs", "--json", agent="luna").stdout)
    assert [s["file"] for s in listed] == ["*.py"]
    beta.cli("events", "unsub", "--id", str(listed[0]["id"]), agent="luna")
    assert json.loads(beta.cli("events", "subs", "--json", agent="luna").stdout) == []


def test_send_wait_injected_returns_once_the_agent_saw_it(device: Device) -> None:
    """`send --wait injected` returns when a hook placed the message in the agent's context."""
    luna = Session(device, "claude", "wait-1", agent="luna")
    luna.hook("SessionStart")
    device.call("register", agent="nova")
    env = {**device.env, "SWITCHBOARD_AGENT": "nova"}
    cmd = [
        PY,
        "-m",
        "switchboard",
        "send",
        "@luna",
        "--wait",
        "injected",
        "--timeout",
        "60",
        "--json",
    ]
    waiting = subprocess.Popen(
        [*cmd, "--", "look at this"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    device.wait_events(1, type="message_posted")
    assert "look at this" in luna.context_text(luna.hook("PostToolUse"))
    out, err = waiting.communicate(timeout=timeout(60))
    assert waiting.returncode == 0, err
    result = json.loads(out)
    assert result["complete"] and result["recipients"][0]["state"] == "injected"


def test_send_wait_read_times_out_with_a_clear_error(device: Device) -> None:
    """`send --wait read` that times out exits 1 and names who has not read it."""
    Session(device, "claude", "wait-2", agent="luna").hook("SessionStart")
    done = device.cli(
        "send", "@luna", "--wait", "read", "--timeout", "0.2", "--", "nobody reads this",
        check=False, agent="nova",
    )  # fmt: skip
    assert done.returncode == 1
    assert "not every recipient reached read" in done.stderr
    assert f"luna:{device.short}" in done.stderr


def test_events_sub_never_shows_a_secret_room_to_an_outsider(device: Device) -> None:
    """A subscription to every message delivers public-room posts, never a secret room's."""
    luna = Session(device, "claude", "sub-secret", agent="luna")
    luna.hook("SessionStart")
    device.call("events.subscribe", agent="luna", type="message_posted")
    device.call("room.create", agent="nova", name="vault", kind="secret")
    device.call("room.create", agent="nova", name="lobby")
    device.call("send", agent="nova", to=["#vault"], text="the vault code is 1234")
    device.call("send", agent="nova", to=["#lobby"], text="hello lobby")
    device.wait_events(2, type="message_posted", all_rooms=True)
    text = luna.context_text(luna.hook("PostToolUse"))
    assert "hello lobby" in text
    assert "1234" not in text and "vault" not in text
