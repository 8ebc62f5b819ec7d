"""Resume and fork on one device: a stopped agent's harness session continued through the spawn
path with the harness's own resume argv (the fake harness checks it), the same identity and its
unread messages; a fork as a new agent; refusals with their reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import Device
from conftest import HARNESSES, spawn, wait_task
from coord_cluster import wait_until

from switchboard.errors import NotFound, SwitchboardError


def _stopped_agent(device: Device, name: str, harness: str, work: Path, session: str) -> None:
    """Agent ``name`` ran a ``harness`` task in ``work`` whose hook said its session is
    ``session``, and has ended."""
    task = spawn(device, "wait-message 30", harness=harness, name=name)
    assert task["state"] == "running", task
    wait_task(device, task["id"], ("running",))
    device.call("agent.hook", agent=name, harness=harness, kind="session_start",
                session=session, cwd=str(work), source="startup")  # fmt: skip
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
