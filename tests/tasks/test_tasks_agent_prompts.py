"""Permission prompts of agents started by hand travel: Claude Code's PermissionRequest hook.

The real hook entry point (``switchboard hook claude PermissionRequest``, a subprocess fed
the payload Claude Code 2.1.332 sends) asks the daemon; the prompt shows in ``approvals`` on
every device with the agent's address and what it asks, the agent shows ``blocked``, and an
answer from a device the agent's device allows becomes the hook's decision. No answer in
time, the terminal's own answer, no daemon, or a policy that lets nobody answer: no decision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from conftest import spawn, timeout, wait_task, write_policy
from coord_cluster import wait_until

from switchboard.errors import SwitchboardError

FIXTURES = Path(__file__).resolve().parents[1] / "harness" / "fixtures"
COMMAND = "rm -rf build"


def _payload(event: str, **tool_input: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / "claude.json").read_text())[event]
    payload.update(session_id="sess-luna", cwd="/tmp")
    if tool_input:
        payload["tool_input"] = tool_input
    return payload


class Hook:
    """One ``switchboard hook claude EVENT`` process of agent luna's Claude Code."""

    def __init__(self, device: Device, event: str, payload: dict[str, Any], wait: float = 60,
                 agent: str = "luna") -> None:  # fmt: skip
        env = {**device.env, "SWITCHBOARD_AGENT": agent, "SWITCHBOARD_HARNESS_PID": "4242",
               "SWITCHBOARD_PROMPT_WAIT": str(wait), "SWITCHBOARD_HOOK_AUTOSTART": "0"}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "hook", "claude", event],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload))
        self.proc.stdin.close()
        self.proc.stdin = None  # written and closed: communicate() only reads

    def result(self, seconds: float = 60) -> dict[str, Any]:
        """The hook's JSON answer (it exits 0 whatever happens)."""
        out, err = self.proc.communicate(timeout=timeout(seconds))
        assert self.proc.returncode == 0, err
        answer: dict[str, Any] = json.loads(out)
        return answer


def _ask(device: Device, wait: float = 60) -> Hook:
    return Hook(device, "PermissionRequest", _payload("PermissionRequest"), wait)


def _listed(device: Device) -> dict[str, Any]:
    def look() -> dict[str, Any] | None:
        rows: list[dict[str, Any]] = device.call("approvals")
        return rows[0] if rows else None

    found: dict[str, Any] = wait_until(look, 60, "the prompt in approvals")
    return found


def _luna(device: Device, short: str) -> dict[str, Any]:
    rows = [a for a in device.call("agents") if a["address"] == f"luna:{short}"]
    assert rows, device.call("agents")
    return rows[0]


def _decision(out: dict[str, Any]) -> dict[str, Any]:
    assert out["hookSpecificOutput"]["hookEventName"] == "PermissionRequest", out
    decision: dict[str, Any] = out["hookSpecificOutput"]["decision"]
    return decision


def test_agent_prompt_shows_everywhere_and_is_answered_from_an_allowed_device(pair: Any) -> None:
    """A hand-started agent's prompt on vps shows on lap with what it asks and the agent
    blocked; lap may not answer until vps's policy lets it; then lap's approve is the hook's
    allow, and the agent's status goes back."""
    lap, vps, _ = pair
    hook = _ask(vps)
    prompt = _listed(lap)
    assert (prompt["task"], prompt["agent"], prompt["tool"], prompt["detail"]) == (
        "", f"luna:{vps.short}", "Bash", COMMAND
    )  # fmt: skip
    assert prompt["device"] == vps.short and prompt["harness"] == "claude"
    blocked = wait_until(lambda: _luna(lap, vps.short)["status"] == "blocked" or None, 30,
                         "luna blocked on lap")  # fmt: skip
    assert blocked and COMMAND in _luna(lap, vps.short)["summary"]
    with pytest.raises(SwitchboardError, match="may not answer"):
        lap.call("prompt.answer", agent="boss", prompt=prompt["prompt"], answer="allow")
    vps.cli("spawn", "allow", lap.short, "--answer")
    done = lap.cli("approve", prompt["prompt"], agent="boss")
    assert f"of luna:{vps.short}: allow" in done.stdout
    assert _decision(hook.result()) == {"behavior": "allow"}
    lap_id = lap.call("status")["device"]["id"]
    [answered] = vps.call("events", type="permission_answered", all_rooms=True)
    assert (answered["data"]["answer"], answered["data"]["by"]) == ("allow", f"boss:{lap_id}")
    wait_until(lambda: _luna(lap, vps.short)["status"] != "blocked" or None, 30, "luna unblocked")
    assert lap.call("approvals") == []


@pytest.mark.parametrize("pair", ["relay"], indirect=True)
def test_agent_prompt_denied_with_reason_and_first_answer_wins(pair: Any) -> None:
    """``deny --reason`` from another device is the hook's deny with the reason as its
    message (what the model reads); a later answer is refused."""
    lap, vps, _ = pair
    vps.cli("spawn", "allow", lap.short, "--answer", "lu*")
    assert vps.call("spawn.policy")["devices"][0]["answer"] == ["lu*"]
    hook = _ask(vps)
    prompt = _listed(lap)
    lap.cli("deny", prompt["prompt"], "--reason", "not on main", agent="boss")
    assert _decision(hook.result()) == {"behavior": "deny", "message": "not on main"}
    late = vps.cli("approve", prompt["prompt"], agent="ops", check=False)
    assert late.returncode == 1


def test_agent_prompt_times_out_to_no_decision(device: Device) -> None:
    """Unanswered within SWITCHBOARD_PROMPT_WAIT, the hook gives no decision (the harness
    asks in its own way) and the prompt is settled ``timeout``."""
    hook = _ask(device, wait=1)
    assert hook.result() == {}
    [answered] = device.call("events", type="permission_answered", all_rooms=True)
    assert answered["data"]["answer"] == "timeout"
    assert device.call("approvals") == []
    assert _luna(device, device.short)["status"] != "blocked"


def test_agent_prompt_answered_at_the_terminal_expires(device: Device) -> None:
    """The person answers at Claude Code's own prompt: the same tool runs and its
    PostToolUse settles the pending prompt ``expired``; the waiting hook gives no decision."""
    hook = _ask(device)
    _listed(device)
    after = Hook(device, "PostToolUse", _payload("PostToolUse:Bash", command=COMMAND))
    assert after.result() == {}
    assert hook.result() == {}
    [answered] = device.call("events", type="permission_answered", all_rooms=True)
    assert answered["data"]["answer"] == "expired"
    assert device.call("approvals") == []


def test_agent_prompt_of_another_tool_does_not_expire(device: Device) -> None:
    """A different tool finishing meanwhile (a parallel read) leaves the prompt pending."""
    hook = _ask(device)
    prompt = _listed(device)
    other = Hook(device, "PostToolUse", _payload("PostToolUse:Bash", command="ls"))
    assert other.result() == {}
    assert [p["prompt"] for p in device.call("approvals")] == [prompt["prompt"]]
    device.call("prompt.answer", agent="ops", prompt=prompt["prompt"], answer="allow")
    assert _decision(hook.result()) == {"behavior": "allow"}


def test_agent_prompt_without_anyone_to_answer_is_not_raised(device: Device) -> None:
    """A policy under which nobody may answer the agent: no prompt, no decision, at once."""
    write_policy(device, "[local]\nanswer = []\n")
    assert _ask(device).result() == {}
    assert device.call("approvals") == []
    assert device.call("events", type="permission_asked", all_rooms=True) == []


def test_agent_prompt_without_a_daemon_gives_no_decision(tmp_path: Path) -> None:
    """No daemon at the home: the hook gives no decision (never a silent allow)."""
    home = tmp_path / "none"
    home.mkdir()
    env = {**os.environ, "SWITCHBOARD_HOME": str(home), "SWITCHBOARD_HOOK_AUTOSTART": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "hook", "claude", "PermissionRequest"],
        input=json.dumps(_payload("PermissionRequest")), env=env, capture_output=True,
        text=True, timeout=timeout(30), check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == {}
    assert "no daemon" in done.stderr


def test_agent_prompt_ask_without_a_task_blocks_the_agent(device: Device) -> None:
    """``prompt.ask`` by an agent that runs no task asks as that agent (the MCP permission
    tool of a hand-started ``claude --permission-prompt-tool``)."""
    asked = device.call("prompt.ask", agent="boss", tool="Bash", detail="x", wait=0)
    assert (asked["task"], asked["answer"], asked["allowed"]) == ("", "timeout", False)


def test_agent_prompt_hook_of_a_task_defers_to_the_task(device: Device) -> None:
    """A spawned task's agent whose installed hook fires too gets no decision at once: its
    prompts travel through the task (one prompt, not two)."""
    task = spawn(device, "ask Bash make\nsay ok", harness="claude")
    [prompt] = wait_until(lambda: device.call("approvals") or None, 60, "the task's prompt")
    hook = Hook(device, "PermissionRequest", _payload("PermissionRequest"), agent=task["agent"])
    assert hook.result() == {}
    assert [p["prompt"] for p in device.call("approvals")] == [prompt["prompt"]]
    device.call("prompt.answer", agent="boss", prompt=prompt["prompt"], answer="allow")
    assert "answer allow" in wait_task(device, task["id"])["result"]
