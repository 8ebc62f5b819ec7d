"""Permission prompts travel: a task blocks, the prompt shows everywhere, and is answered."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from conftest import FAKE, spawn, wait_task, write_policy
from coord_cluster import wait_until

from switchboard.errors import SwitchboardError


def _pending(device: Device, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``device`` lists ``count`` pending prompts; return them."""

    def look() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = device.call("approvals")
        return rows if len(rows) >= count else None

    return wait_until(look, 60, f"{count} pending prompt(s)")


def test_tasks_claude_prompt_through_the_permission_tool_allowed(device: Device) -> None:
    """Headless Claude asks its --permission-prompt-tool (our MCP server); the task shows
    blocked with what it asks; ``approve`` lets it go on."""
    answer = spawn(device, "ask Bash rm -rf build\nsay after", harness="claude")
    [prompt] = _pending(device)
    assert (prompt["task"], prompt["tool"], prompt["detail"]) == (answer["id"], "Bash",
                                                                   "rm -rf build")  # fmt: skip
    assert device.call("task.show", task=answer["id"])["state"] == "blocked"
    done = device.cli("approve", prompt["prompt"], agent="boss")
    assert "allow" in done.stdout
    task = wait_task(device, answer["id"])
    assert task["state"] == "completed"
    assert "PROMPT_TOOL mcp__switchboard__permission_prompt" in task["result"]
    assert "answer allow" in task["result"]
    [unblocked] = device.call("events", type="task_unblocked", all_rooms=True)
    assert unblocked["data"]["answer"] == "allow"
    assert unblocked["data"]["by"].startswith("boss:")


@pytest.mark.parametrize(("harness", "answer"), [("gemini", "approve"), ("opencode", "deny")])
def test_tasks_acp_harness_prompt_travels(device: Device, harness: str, answer: str) -> None:
    """Gemini CLI and OpenCode run as ACP agents under our client (harnesses/acp.py): their
    session/request_permission blocks the task, and the answer is their allow/reject option."""
    task_id = spawn(device, "ask execute rm -rf build\nsay after", harness=harness)["id"]
    [prompt] = _pending(device)
    assert (prompt["tool"], prompt["detail"]) == ("execute", "rm -rf build")
    device.cli(answer, prompt["prompt"], agent="boss")
    task = wait_task(device, task_id)
    assert task["state"] == "completed", task["result"]
    expected = "answer allow" if answer == "approve" else "answer deny: rejected"
    assert expected in task["result"] and "after" in task["result"]


def test_tasks_prompt_denied_with_reason_and_first_answer_wins(device: Device) -> None:
    """``deny --reason`` reaches the agent; a second answer is refused."""
    answer = spawn(device, "ask Bash git push --force\nsay after", harness="claude")
    [prompt] = _pending(device)
    device.cli("deny", answer["id"], "--reason", "not on main", agent="boss")
    late = device.cli("approve", prompt["prompt"], agent="boss", check=False)
    assert late.returncode == 1
    task = wait_task(device, answer["id"])
    assert "answer deny: deny by boss:" in task["result"]
    assert "not on main" in task["result"]


def test_tasks_prompt_times_out_to_deny(device: Device) -> None:
    """An unanswered prompt of a task ends as a timeout, which denies."""
    task = wait_task(device, spawn(device, "ask-brief Write /etc/passwd\nsay after")["id"])
    assert "answer timeout: no answer within 1 s" in task["result"]
    [unblocked] = device.call("events", type="task_unblocked", all_rooms=True)
    assert unblocked["data"]["answer"] == "timeout"


def test_tasks_prompt_from_other_harnesses_is_denied_headless(device: Device) -> None:
    """A headless harness with no way to relay its prompts keeps its own default: deny."""
    task = wait_task(device, spawn(device, "ask Bash ls", harness="codex")["id"])
    assert "answer deny: nobody to ask" in task["result"]


def _allow(vps: Device, lap: Device, work: Path, extra: str = "") -> None:
    lap_id = lap.call("status")["device"]["id"]
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    write_policy(vps, f'[devices.{lap_id}]\nharnesses = ["cmd", "claude"]\ndirs = ["{work}"]\n'
                      f'{extra}[harnesses.cmd]\nargs = {args}\ntask = "arg"\n')  # fmt: skip


def test_tasks_remote_prompt_answered_from_the_requester(pair: Any) -> None:
    """A prompt of a task on vps shows on lap; lap approves one and denies another."""
    lap, vps, work = pair
    _allow(vps, lap, work)
    vps_short = vps.short
    one = lap.call("spawn", agent="boss", harness="claude", text="ask Bash make\nsay ok",
                   on=vps_short)  # fmt: skip
    [prompt] = _pending(lap)
    assert prompt["device"] == vps_short and prompt["tool"] == "Bash"
    lap.cli("approve", prompt["prompt"], agent="boss")
    task = wait_task(lap, one["id"], ("completed",), seconds=60)
    assert "answer allow" in task["result"]
    two = lap.call("spawn", agent="boss", harness="cmd", text="ask Bash rm -rf /\nsay ok",
                   on=vps_short)  # fmt: skip
    _pending(lap)
    lap.cli("deny", two["id"], "--reason", "never", agent="boss")
    task = wait_task(lap, two["id"], ("completed",), seconds=60)
    assert "answer deny: never" in task["result"]
    by = [e["data"]["by"] for e in vps.call("events", type="task_unblocked", all_rooms=True)]
    lap_id = lap.call("status")["device"]["id"]
    assert by == [f"boss:{lap_id}", f"boss:{lap_id}"]


def test_tasks_remote_prompt_refused_when_policy_says_no(pair: Any) -> None:
    """With answer_own = false, the requester may not answer; vps's own user still may."""
    lap, vps, work = pair
    _allow(vps, lap, work, "answer_own = false\n")
    task = lap.call("spawn", agent="boss", harness="cmd", text="ask Bash ls\nsay ok",
                    on=vps.short)  # fmt: skip
    [prompt] = _pending(lap)
    with pytest.raises(SwitchboardError, match="may not answer"):
        lap.call("prompt.answer", agent="boss", prompt=prompt["prompt"], answer="allow")
    vps.call("prompt.answer", agent="ops", prompt=prompt["prompt"], answer="allow")
    assert "answer allow" in wait_task(lap, task["id"], ("completed",), seconds=60)["result"]
