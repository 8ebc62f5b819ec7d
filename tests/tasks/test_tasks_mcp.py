"""Delegation through MCP tools: an agent spawns a task, nudges it, waits for its result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cluster import Device
from conftest import FAKE, write_policy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from mcp_kit import call, mcp_session, run


def test_tasks_mcp_spawn_nudge_and_wait_for_the_result(device: Device, work: Path) -> None:
    """spawn returns an id; task_nudge reaches the task; task_status waits for the result."""

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "lead"}) as s:
            started = await call(s, "spawn", task="wait-message 30\nsay ok", harness="cmd",
                                 dir=str(work))  # fmt: skip
            assert not started.is_error, started.text
            task = started.value["id"]
            assert started.value["state"] == "running"
            nudged = await call(s, "task_nudge", task=task, text="carry on")
            assert not nudged.is_error, nudged.text
            status = await call(s, "task_status", task=task, wait_seconds=60)
            assert status.value["state"] == "completed", status.value
            assert "got: carry on" in status.value["result"]
            refused = await call(s, "spawn", task="say x", harness="cmd", dir="/")
            assert refused.value["state"] == "refused"
            assert "outside the allowed" in refused.value["reason"]

    run(body, 120)


def test_tasks_mcp_stop(device: Device, work: Path) -> None:
    """task_stop stops a running task; kill=true kills it."""

    async def body() -> None:
        async with mcp_session({**device.env, "SWITCHBOARD_AGENT": "lead"}) as s:
            first = (await call(s, "spawn", task="hang", harness="cmd", dir=str(work))).value
            second = (await call(s, "spawn", task="hang", harness="cmd", dir=str(work))).value
            assert not (await call(s, "task_stop", task=first["id"])).is_error
            assert not (await call(s, "task_stop", task=second["id"], kill=True)).is_error
            one = await call(s, "task_status", task=first["id"], wait_seconds=60)
            two = await call(s, "task_status", task=second["id"], wait_seconds=60)
            assert (one.value["state"], two.value["state"]) == ("stopped", "killed")

    run(body, 120)


def test_tasks_mcp_delegate_to_another_device(pair: Any) -> None:
    """An agent on one device delegates to the other through the tools and gets the result."""
    lap, vps, work = pair
    lap_id = lap.call("status")["device"]["id"]
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    write_policy(vps, f'[devices.{lap_id}]\nharnesses = ["cmd"]\ndirs = ["{work}"]\n'
                      f'[harnesses.cmd]\nargs = {args}\ntask = "arg"\n')  # fmt: skip
    vps_short = vps.short

    async def body() -> None:
        async with mcp_session({**lap.env, "SWITCHBOARD_AGENT": "lead"}) as s:
            started = await call(s, "spawn", task="say done over there", harness="cmd",
                                 device=vps_short)  # fmt: skip
            assert started.value["state"] == "running", started.text
            status = await call(s, "task_status", task=started.value["id"], wait_seconds=60)
            assert status.value["state"] == "completed", status.value
            assert status.value["device"] == vps_short
            assert "done over there" in status.value["result"]

    run(body, 120)


def test_tasks_mcp_an_agent_hands_itself_off(device: Device, work: Path) -> None:
    """The handoff tool starts a successor with the brief; messages to the original reach it."""
    import subprocess  # noqa: PLC0415

    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "draft.txt").write_text("half of it\n")

    async def body() -> None:
        env = {**device.env, "SWITCHBOARD_AGENT": "lead"}
        async with mcp_session(env, cwd=str(work)) as s:  # the agent works in work
            await call(s, "register", summary="writing the draft")
            handed = await call(s, "handoff", device="local", harness="cmd", dir=str(work),
                                note="wait-message 30")  # fmt: skip
            assert not handed.is_error, handed.text
            assert handed.value["state"] == "running", handed.value
            successor = handed.value["successor"]
            assert successor != f"lead:{device.short}"
            await call(s, "send", to=f"@lead:{device.short}", text="status please")
            status = await call(s, "task_status", task=handed.value["id"], wait_seconds=60)
            assert status.value["state"] == "completed", status.value
            assert "got: status please" in status.value["result"]
            assert (work / "draft.txt").read_text() == "half of it\n"  # untouched, in place

    run(body, 120)
