"""Handoff between two devices: a successor starts on the other device with the original's
uncommitted changes applied to its checkout, the original shows handed_off, and messages to the
original reach the successor; a conflicting checkout there is reported and left untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from conftest import FAKE, wait_task, write_policy
from coord_cluster import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness_kit import clean_env, run_hook

pytestmark = pytest.mark.parametrize("pair", ["relay"], indirect=True)


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(where), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def _repos(root: Path) -> tuple[Path, Path]:
    """An upstream with one commit, and two clones of it: the laptop's and the server's."""
    upstream = root / "upstream"
    upstream.mkdir()
    _git(upstream, "init", "-q", "-b", "main")
    (upstream / "app.py").write_text("print('v1')\n")
    (upstream / "notes.md").write_text("notes\n")
    _git(upstream, "add", ".")
    _git(upstream, "commit", "-q", "-m", "first version")
    clones = []
    for name in ("lapcheckout", "vpscheckout"):
        subprocess.run(["git", "clone", "-q", str(upstream), str(root / name)], check=True)
        clones.append(root / name)
    return clones[0], clones[1]


def _allow(vps: Device, lap: Device, work: Path) -> None:
    lap_id = lap.call("status")["device"]["id"]
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    write_policy(vps, f'[devices.{lap_id}]\nharnesses = ["cmd"]\ndirs = ["{work}"]\n'
                      f'[harnesses.cmd]\nargs = {args}\ntask = "arg"\n')  # fmt: skip


def _claude_session(device: Device, agent: str, cwd: Path, root: Path) -> None:
    """Agent ``agent`` on ``device`` is a Claude Code session in ``cwd`` whose transcript (the
    entry shapes of 2.1.332) holds one exchange; its SessionStart hook says where."""
    transcript = root / "claudehome" / "projects" / "-work" / "s1.jsonl"
    transcript.parent.mkdir(parents=True)
    user = {
        "type": "user",
        "sessionId": "s1",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "uuid": "u1",
        "message": {"role": "user", "content": "port the tokenizer first"},
    }
    reply = {
        "type": "assistant",
        "sessionId": "s1",
        "timestamp": "2026-12-06T10:00:05.000Z",
        "uuid": "a1",
        "message": {
            "id": "m1",
            "role": "assistant",
            "content": [{"type": "text", "text": "tokenizer ported"}],
        },
    }
    transcript.write_text(json.dumps(user) + "\n" + json.dumps(reply) + "\n")  # fmt: skip
    env = {**clean_env(), "SWITCHBOARD_HOME": str(device.home), "SWITCHBOARD_AGENT": agent}
    payload = {"session_id": "s1", "transcript_path": str(transcript), "cwd": str(cwd),
               "hook_event_name": "SessionStart", "source": "startup"}  # fmt: skip
    assert run_hook(env, "claude", "SessionStart", payload).code == 0


def _status_of(device: Device, name: str, short: str) -> str:
    rows = device.call("agents", all=True)
    return next(a["status"] for a in rows if a["address"] == f"{name}:{short}")


def test_handoff_carries_changes_and_messages(pair: Any, short_home: Path) -> None:
    lap, vps, _ = pair
    mine, theirs = _repos(short_home)
    _allow(vps, lap, theirs)
    _claude_session(lap, "luna", mine, short_home)
    lap.call("register", agent="luna", cwd=str(mine), summary="porting the parser")
    lap.call("send", agent="nova", to=["@luna"], text="please also fix the docs", intent="request")
    (mine / "app.py").write_text("print('v2, half done')\n")  # a change to a tracked file
    (mine / "parser.py").write_text("def parse(): ...\n")  # and a new one

    answer = lap.call(
        "handoff", agent="luna", to=vps.short, harness="cmd", dir=str(theirs),
        note="wait-message 60",
    )  # fmt: skip
    assert answer["state"] == "running", answer
    assert answer["successor"] == f"luna:{vps.short}"
    assert "app.py" in answer["applied"] and "parser.py" in answer["applied"]
    assert (theirs / "app.py").read_text() == "print('v2, half done')\n"
    assert (theirs / "parser.py").read_text() == "def parse(): ...\n"
    assert (mine / "app.py").read_text() == "print('v2, half done')\n"  # the original keeps them

    for device in (lap, vps):  # every device shows the original handed off
        wait_until(lambda d=device: _status_of(d, "luna", lap.short) == "handed_off", 30,
                   f"luna handed_off on {device.name}")  # fmt: skip
    sent = lap.call("send", agent="nova", to=[f"@luna:{lap.short}"], text="are you there?")
    assert {r["address"] for r in sent["recipients"]} == {f"luna:{lap.short}", f"luna:{vps.short}"}

    task = wait_task(lap, answer["id"], ("completed",), seconds=60)
    assert "got: are you there?" in task["result"]  # the successor read it from its inbox
    brief = vps.call("events", type="task_requested", all_rooms=True)[-1]["data"]["text"]
    assert "porting the parser" in brief
    assert "branch main" in brief and "first version" in brief
    assert "please also fix the docs" in brief  # recent messages
    assert "#1 prompt: port the tokenizer first" in brief  # its transcript's last exchanges
    assert "#1 answer: tokenizer ported" in brief
    assert "Requests to it still open" in brief


def test_handoff_conflict_is_reported_and_changes_nothing(pair: Any, short_home: Path) -> None:
    lap, vps, _ = pair
    mine, theirs = _repos(short_home)
    _allow(vps, lap, theirs)
    lap.call("register", agent="vega", cwd=str(mine))
    (mine / "app.py").write_text("print('from the laptop')\n")
    (theirs / "app.py").write_text("print('the server has its own edit')\n")

    answer = lap.call("handoff", agent="vega", to=vps.short, harness="cmd", dir=str(theirs))
    assert answer["state"] == "refused"
    assert "conflict" in answer["reason"] and "app.py" in answer["reason"]
    assert (theirs / "app.py").read_text() == "print('the server has its own edit')\n"
    assert vps.call("events", type="task_started", all_rooms=True) == []
    assert lap.call("events", type="agent_handed_off", all_rooms=True) == []
    assert _status_of(lap, "vega", lap.short) != "handed_off"


def test_handoff_refused_by_policy_and_for_another_repository(pair: Any, short_home: Path) -> None:
    lap, vps, _ = pair
    mine, theirs = _repos(short_home)
    lap.call("register", agent="orion", cwd=str(mine))
    (mine / "notes.md").write_text("more notes\n")
    done = lap.cli("handoff", "orion", "--to", vps.short, "--harness", "cmd", "--dir",
                   str(theirs), check=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.startswith(f"handoff refused on {vps.short}: ")
    assert "may not spawn here" in done.stdout
    assert (theirs / "notes.md").read_text() == "notes\n"

    other = short_home / "other"
    other.mkdir()
    _git(other, "init", "-q")
    _allow(vps, lap, other)
    answer = lap.call("handoff", agent="orion", to=vps.short, harness="cmd", dir=str(other))
    assert answer["state"] == "refused" and "holds" in answer["reason"], answer
    assert not (other / "notes.md").exists()
