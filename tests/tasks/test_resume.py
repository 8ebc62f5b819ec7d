"""Resume and fork on one device: a stopped agent's harness session continued through the spawn
path with the harness's own resume argv (the fake harness checks it), the same identity and its
unread messages; a fork as a new agent; refusals with their reasons."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cluster import Device
from conftest import FAKE, HARNESSES, cmd_policy, spawn, wait_task, write_policy
from coord_cluster import wait_until

from switchboard.daemon import shapes
from switchboard.errors import NotFound, SwitchboardError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from mcp_kit import call, mcp_session, run


def _stopped_agent(
    device: Device, name: str, harness: str, work: Path, session: str, transcript: str = ""
) -> None:
    """Agent ``name`` ran a ``harness`` task in ``work`` whose hook said its session is
    ``session``, and has ended."""
    task = spawn(device, "wait-message 30", harness=harness, name=name)
    assert task["state"] == "running", task
    wait_task(device, task["id"], ("running",))
    hook = {"harness": harness, "kind": "session_start", "session": session, "cwd": str(work),
            "source": "startup", "transcript": transcript}  # fmt: skip
    device.call("agent.hook", agent=name, **hook)
    device.call("send", agent="boss", to=[f"@{name}"], text="that is all")
    assert wait_task(device, task["id"])["state"] == "completed"
    _wait_offline(device, name)


def _wait_offline(device: Device, name: str) -> None:
    def offline() -> bool:
        rows = device.call("agents", all=True)
        return any(a["name"] == name and a["status"] == "offline" for a in rows)

    wait_until(offline, 30, f"{name} offline")


@pytest.mark.parametrize("harness", HARNESSES)
def test_resume_continues_the_session_as_the_same_agent_with_unread_messages(
    device: Device, work: Path, harness: str
) -> None:
    """The resume argv of the harness, the session of the agent, its name, its messages."""
    _stopped_agent(device, "luna", harness, work, "sess-1")
    device.call("send", agent="nova", to=["@luna"], text="the build is green again")
    device.call("send", agent="nova", to=["@luna"], text="please port the lexer next")
    answer = device.call("resume", agent="boss", who="luna")
    assert answer["state"] == "running", answer
    assert answer["agent"].startswith("luna:")
    assert (answer["how"], answer["session"], answer["messages"]) == ("resume", "sess-1", 2)
    typed = msgspec.convert(answer, shapes.Resumed, strict=True)  # the declared shape, exactly
    assert msgspec.to_builtins(typed) == answer
    task = wait_task(device, answer["id"])
    assert task["state"] == "completed", task["result"]
    lines = task["result"].splitlines()
    assert "CONTINUES resume sess-1" in lines
    assert "AGENT luna" in lines
    assert "the build is green again" in task["result"]
    assert "please port the lexer next" in task["result"]
    assert task["dir"] == str(work.resolve())
    assert device.call("inbox", agent="luna", peek=True) == []  # delivered in the prompt


@pytest.mark.parametrize("harness", ["claude", "codex", "opencode", "pi"])
def test_fork_starts_a_new_agent_from_a_copy_of_the_session(
    device: Device, work: Path, harness: str
) -> None:
    _stopped_agent(device, "luna", harness, work, "sess-2")
    (work / "elsewhere").mkdir()
    answer = device.call("fork", agent="boss", who="luna", dir=str(work / "elsewhere"))
    assert answer["state"] == "running", answer
    assert answer["agent"].startswith("luna-fork:")
    task = wait_task(device, answer["id"])
    assert task["state"] == "completed", task["result"]
    assert "CONTINUES fork sess-2" in task["result"].splitlines()
    assert "AGENT luna-fork" in task["result"].splitlines()
    assert task["dir"] == str((work / "elsewhere").resolve())
    named = device.call("fork", agent="boss", who="luna", dir=str(work), name="sol")
    assert named["agent"].startswith("sol:")
    wait_task(device, named["id"])


def test_resume_refusals(device: Device, work: Path) -> None:
    """A running agent, an agent with no known session, a harness without resume or fork, an
    unknown agent, another device: each refused with its reason, nothing started."""
    _stopped_agent(device, "gem", "gemini", work, "sess-3")
    with pytest.raises(SwitchboardError, match="has no fork"):
        device.call("fork", agent="boss", who="gem", dir=str(work))
    running = spawn(device, "hang", harness="claude", name="busy")
    wait_task(device, running["id"], ("running",))
    with pytest.raises(SwitchboardError, match="still running"):
        device.call("resume", agent="boss", who="busy")
    device.call("task.stop", agent="boss", task=running["id"])
    wait_task(device, running["id"])
    _wait_offline(device, "busy")
    with pytest.raises(NotFound, match="no claude session of busy"):
        device.call("resume", agent="boss", who="busy")
    script = wait_task(device, spawn(device, "say hi", name="scripted")["id"])
    assert script["state"] == "completed"
    with pytest.raises(SwitchboardError, match=r"harness \(cmd\) has no resume"):
        device.call("resume", agent="boss", who="scripted")
    with pytest.raises(NotFound, match="unknown agent"):
        device.call("resume", agent="boss", who="nobody")
    tasks = device.call("tasks", all=True)
    assert len(tasks) == 3  # the three spawns above, no resumed one


def test_resume_and_fork_from_the_cli(device: Device, work: Path) -> None:
    """``switchboard resume`` and ``fork`` print the continuing task; a refusal exits 1."""
    _stopped_agent(device, "luna", "pi", work, "sess-4")
    device.call("send", agent="nova", to=["@luna"], text="rebase onto main please")
    resumed = device.cli_json("resume", "luna", agent="boss")
    assert (resumed["state"], resumed["messages"]) == ("running", 1)
    assert "rebase onto main please" in wait_task(device, resumed["id"])["result"]
    _wait_offline(device, "luna")
    done = device.cli("fork", "luna", "--dir", str(work), "--name", "sol", agent="boss")
    assert "fork of luna (session sess-4) runs as sol:" in done.stdout
    again = device.cli("resume", "sol", check=False, agent="boss")
    assert again.returncode == 1
    assert "still running" in again.stderr or "no pi session of sol" in again.stderr


def test_resume_refuses_a_bad_session_id_and_a_policy_template(device: Device, work: Path
                                                                ) -> None:  # fmt: skip
    """A session id that looks like an option never reaches the command line; a harness the
    policy gives its own argv has no resume form, and the task fails saying so."""
    _stopped_agent(device, "odd", "claude", work, "--dangerously-skip-permissions")
    with pytest.raises(SwitchboardError, match="not a harness session id"):
        device.call("resume", agent="boss", who="odd")
    _stopped_agent(device, "own", "codex", work, "sess-5")
    args = json.dumps([sys.executable, str(FAKE), "codex", "exec", "-"])
    write_policy(device, cmd_policy(work, f"[harnesses.codex]\nargs = {args}\n"))
    answer = device.call("resume", agent="boss", who="own")
    assert answer["state"] == "failed"
    assert "which have no resume form" in answer["reason"]


def test_resume_and_fork_mcp_tools(device: Device, work: Path) -> None:
    """An agent resumes a stopped one and forks it through the MCP tools; a refusal is an
    error result with the reason."""
    _stopped_agent(device, "luna", "opencode", work, "ses_db25ca17affe4MGrTzijJiEg2O")
    device.call("send", agent="nova", to=["@luna"], text="ship it")

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "lead"}) as s:
            resumed = await call(s, "resume", agent="luna")
            assert not resumed.is_error, resumed.text
            assert (resumed.value["state"], resumed.value["messages"]) == ("running", 1)
            forked = await call(s, "fork", agent="luna", dir=str(work), name="twin")
            assert not forked.is_error, forked.text
            assert forked.value["agent"].startswith("twin:")
            refused = await call(s, "resume", agent="twin")
            assert refused.is_error
            assert "still running" in refused.text or "no opencode session" in refused.text
            for started in (resumed, forked):
                task = await call(s, "task_status", task=started.value["id"], wait_seconds=60)
                assert task.value["state"] == "completed", task.value
                assert (
                    f"CONTINUES {started.value['how']} ses_db25ca17affe4MGrTzijJiEg2O"
                    in task.value["result"]
                )

    run(body, 120)


@pytest.mark.parametrize("pair", ["relay"], indirect=True)
def test_resume_on_another_device_carries_the_claude_session_file(
    pair: Any, short_home: Path
) -> None:
    """``resume --on`` the other device: its policy decides, the session's JSONL lands where its
    Claude Code looks for the directory's sessions, and the agent runs there by the same name
    with its messages; another harness, or a policy that refuses, is told why."""
    lap, vps, work = pair
    mine = short_home / "lapwork"
    mine.mkdir()
    write_policy(lap, cmd_policy(mine))
    transcript = short_home / "lapclaude" / "projects" / "-lapwork" / "sess-7.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text('{"type": "user", "sessionId": "sess-7"}\n{"type": "assistant"}\n')
    _stopped_agent(lap, "luna", "claude", mine, "sess-7", transcript=str(transcript))
    _stopped_agent(lap, "pim", "pi", mine, "sess-8")
    lap.call("send", agent="nova", to=["@luna"], text="continue on the server")
    vps_short = vps.call("status")["device"]["short"]
    refused = lap.call("resume", agent="boss", who="luna", on=vps_short)
    assert refused["state"] == "refused", refused  # no policy there for lap yet
    assert lap.call("inbox", agent="luna", peek=True)  # still unread
    config = short_home / "vpsclaude"
    lap_id = lap.call("status")["device"]["id"]
    rules = f'[devices.{lap_id}]\nharnesses = ["claude"]\ndirs = ["{work}"]\n'
    write_policy(vps, rules + f'[harnesses.claude]\nenv = {{CLAUDE_CONFIG_DIR = "{config}"}}\n')
    answer = lap.call("resume", agent="boss", who="luna", on=vps_short)
    assert answer["state"] == "refused", answer  # resume keeps the session's directory
    assert "outside" in answer["reason"]
    forked = lap.call("fork", agent="boss", who="luna", on=vps_short, dir=str(work))
    assert forked["state"] == "running", forked
    assert forked["agent"] == f"luna-fork:{vps_short}"
    task = wait_task(vps, forked["id"])
    assert task["state"] == "completed", task["result"]
    lines = task["result"].splitlines()
    assert "CONTINUES fork sess-7" in lines
    assert "SESSION_FILE 2" in lines
    slug = re.sub(r"[^a-zA-Z0-9]", "-", str(work.resolve()))  # Claude Code's own rule
    placed = config / "projects" / slug / "sess-7.jsonl"
    assert placed.read_text() == transcript.read_text()
    with pytest.raises(SwitchboardError, match="Claude Code sessions only"):
        lap.call("fork", agent="boss", who="pim", on=vps_short, dir=str(work))
    rules = rules.replace(f'dirs = ["{work}"]', f'dirs = ["{work}", "{mine}"]')
    write_policy(vps, rules + f'[harnesses.claude]\nenv = {{CLAUDE_CONFIG_DIR = "{config}"}}\n')
    resumed = lap.call("resume", agent="boss", who="luna", on=vps_short)
    assert resumed["state"] == "running", resumed
    assert (resumed["agent"], resumed["messages"]) == (f"luna:{vps_short}", 1)
    task = wait_task(vps, resumed["id"])
    lines = task["result"].splitlines()
    assert "CONTINUES resume sess-7" in lines
    assert "SESSION_FILE 2" in lines
    assert "AGENT luna" in lines
    assert "continue on the server" in task["result"]
    assert lap.call("inbox", agent="luna", peek=True) == []
