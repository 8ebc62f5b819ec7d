"""Plans (task graphs) run by real daemons: across two devices, through each one's policy."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from conftest import FAKE, cmd_policy, gate, release, write_policy
from coord_cluster import wait_until

from switchboard.errors import NotFound, UserError
from switchboard.tasks.plan import PlanReport


def _allow(vps: Device, lap: Device, work: Path) -> None:
    """Let ``lap`` run the fake ``cmd`` harness in ``work`` on ``vps``."""
    lap_id = lap.call("status")["device"]["id"]
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    write_policy(vps, f'[devices.{lap_id}]\nharnesses = ["cmd"]\ndirs = ["{work}"]\n'
                      f'[harnesses.cmd]\nargs = {args}\ntask = "arg"\n')  # fmt: skip


def _task(name: str, prompt: str, **fields: Any) -> str:
    lines = [f"[[task]]\nname = {json.dumps(name)}\nprompt = {json.dumps(prompt)}",
             'harness = "cmd"']  # fmt: skip
    lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n\n"


def _steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in report["steps"]}


def _wait_plan(device: Device, plan: str, seconds: float = 90) -> dict[str, Any]:
    """Wait until ``device`` shows the plan ended; return its report."""

    def ended() -> dict[str, Any] | None:
        report: dict[str, Any] = device.call("plan.show", plan=plan)
        return report if report["state"] != "running" else None

    return wait_until(ended, seconds, f"plan {plan} ended on {device.name}")


def test_plans_three_tasks_two_devices_middle_fails_requester_restarted(
    pair: Any, work: Path
) -> None:
    """The middle task (on the other device) fails while the requester's daemon restarts: the
    last task never runs, and the restarted requester finishes the report, saying why."""
    lap, vps, vps_work = pair
    write_policy(lap, cmd_policy(work))
    _allow(vps, lap, vps_work)
    requester_down = gate(work)
    text = (
        'name = "release"\n\n'
        + _task("build", "say built", dir=str(work))
        + _task("check", f"wait-gate {requester_down}\nsay checking\nexit 3", device=vps.short,
                dir=str(vps_work), depends_on=["build"])
        + _task("ship", "say shipped", dir=str(work), depends_on=["check"])
    )  # fmt: skip
    started = lap.call("plan.run", agent="boss", text=text)
    PlanReport(**{k: v for k, v in started.items() if k != "steps"})  # the shape holds
    plan = started["id"]
    assert started["state"] == "running" and [s["name"] for s in started["steps"]] == [
        "build", "check", "ship"]  # fmt: skip

    def check_running() -> bool:
        return _steps(lap.call("plan.show", plan=plan))["check"]["state"] == "running"

    wait_until(check_running, 60, "the middle task runs on the other device")
    lap.kill(signal.SIGKILL)  # mid-plan: the requester goes away while check runs
    release(requester_down)  # check fails while the requester is down
    lap.start()
    report = _wait_plan(lap, plan)
    assert f"plan {plan} resumed" in lap.log_text  # the new daemon carried the plan on
    steps = _steps(report)
    assert report["state"] == "failed"
    assert steps["build"]["state"] == "completed" and steps["build"]["device"] == lap.short
    assert "built" in steps["build"]["result"]
    assert steps["check"]["state"] == "failed" and steps["check"]["device"] == vps.short
    assert "exit status 3" in steps["check"]["reason"]
    assert steps["ship"]["state"] == "skipped" and steps["ship"]["task"] == ""
    assert steps["ship"]["reason"] == "depends on check, which failed (exit status 3)"
    # The last task was never asked for, on either device.
    for device in (lap, vps):
        asked = device.call("events", type="task_requested", all_rooms=True)
        assert "say shipped" not in [e["data"]["text"] for e in asked]
    # The report is in the log: the other device shows the same ending.
    there = _wait_plan(vps, plan)
    assert _steps(there)["ship"]["reason"] == steps["ship"]["reason"]
    assert [e["type"] for e in lap.call("events", type="plan_ended", all_rooms=True)] == [
        "plan_ended"]  # fmt: skip


def test_plans_dry_run_shows_each_devices_verdict_and_starts_nothing(pair: Any, work: Path) -> None:
    """``dry_run`` asks each task's device's policy: allowed here, refused there (no grant),
    and runs or writes nothing."""
    lap, vps, vps_work = pair
    write_policy(lap, cmd_policy(work))
    text = _task("here", "say x", dir=str(work)) + _task(
        "there", "say y", device=vps.short, dir=str(vps_work), depends_on=["here"])  # fmt: skip
    report = lap.call("plan.run", agent="boss", text=text, dry_run=True)
    steps = _steps(report)
    assert report["state"] == "dry_run" and report["id"] == ""
    assert steps["here"]["verdict"] == "allowed" and steps["here"]["dir"] == str(work)
    assert steps["there"]["verdict"] == "refused"
    assert "may not spawn here" in steps["there"]["reason"]
    _allow(vps, lap, vps_work)
    again = _steps(lap.call("plan.run", agent="boss", text=text, dry_run=True))
    assert again["there"]["verdict"] == "allowed"
    relative = _task("far", "say z", device=vps.short, dir="src")
    with pytest.raises(UserError, match="task 'far': dir 'src' is on another device"):
        lap.call("plan.run", agent="boss", text=relative, dry_run=True)
    with pytest.raises(NotFound, match="task 'gone': unknown device ZZZZ"):
        lap.call("plan.run", agent="boss", text=_task("gone", "say z", device="ZZZZ"))
    for device in (lap, vps):
        assert device.call("events", type="task_requested", all_rooms=True) == []
    assert lap.call("plans") == []


def test_plans_requester_restart_then_dependant_starts(device: Device, work: Path) -> None:
    """The daemon restarts while a plan's first task runs here: the new daemon sees it end
    and starts the task that depends on it; the plan completes, each task asked for once."""
    after_restart = gate(work)
    text = _task("first", f"wait-gate {after_restart}\nsay one", dir=str(work)) + _task(
        "second", "say two", dir=str(work), depends_on=["first"])  # fmt: skip
    plan = device.call("plan.run", agent="boss", text=text)["id"]

    def first_running() -> bool:
        return _steps(device.call("plan.show", plan=plan))["first"]["state"] == "running"

    wait_until(first_running, 30, "the first task runs")
    device.kill(signal.SIGKILL)
    device.start()
    release(after_restart)
    report = _wait_plan(device, plan)
    assert report["state"] == "completed", report
    assert "two" in _steps(report)["second"]["result"]
    asked = [e["data"]["tags"] for e in device.call("events", type="task_requested",
                                                    all_rooms=True)]  # fmt: skip
    assert asked == [[f"plan-{plan}.1"], [f"plan-{plan}.2"]]
