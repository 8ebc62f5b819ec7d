"""Delegation across two devices through the relay: the receiving device's policy decides."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster import Device
from conftest import FAKE, gate, release, wait_task, write_policy

from switchboard.daemon.client import Client
from switchboard.errors import NotFound


def _spawn_on(lap: Device, vps: Device, text: str, **params: Any) -> dict[str, Any]:
    values = {"agent": "boss", "harness": "cmd", "text": text, "on": vps.short, **params}
    answer: dict[str, Any] = lap.call("spawn", **values)
    return answer


def _allow(vps: Device, lap: Device, work: Path, extra: str = "") -> None:
    lap_id = lap.call("status")["device"]["id"]
    args = json.dumps([sys.executable, str(FAKE), "cmd", "{task}"])
    write_policy(vps, f'[devices.{lap_id}]\nharnesses = ["cmd", "claude"]\ndirs = ["{work}"]\n'
                      f'{extra}[harnesses.cmd]\nargs = {args}\ntask = "arg"\n')  # fmt: skip


def _replicated(device: Device, task: str, states: tuple[str, ...]) -> dict[str, Any]:
    """Wait until ``device`` (not the runner) sees the task in one of ``states``."""
    return wait_task(device, task, states, seconds=60)


def test_tasks_remote_refused_by_default_and_reason_reaches_requester(pair: Any) -> None:
    """With no policy entry, the other device refuses, and the requester sees why, also in
    its own log."""
    lap, vps, _ = pair
    answer = _spawn_on(lap, vps, "say hi")
    assert answer["state"] == "refused"
    assert "may not spawn here" in answer["reason"]
    task = _replicated(lap, answer["id"], ("refused",))
    assert task["device"] == vps.short and "may not spawn" in task["reason"]


def test_tasks_remote_allowed_for_one_device_not_the_other(pair: Any) -> None:
    """vps allows lap; lap allows nobody: vps's request to lap is refused."""
    lap, vps, work = pair
    _allow(vps, lap, work)
    answer = _spawn_on(lap, vps, "say from afar")
    assert answer["state"] == "running", answer
    task = _replicated(lap, answer["id"], ("completed",))
    assert "from afar" in task["result"]
    back = vps.call("spawn", agent="ops", harness="cmd", text="say x", on=lap.short)
    assert back["state"] == "refused"


def test_tasks_remote_directory_escapes_refused(pair: Any, short_home: Path) -> None:
    """``..``, a symlink out, an absolute path outside and a relative path are refused."""
    lap, vps, work = pair
    _allow(vps, lap, work)
    (work / "sub").mkdir()
    (work / "out").symlink_to(short_home)
    for directory in (f"{work}/sub/../..", f"{work}/out", "/etc", "sub"):
        answer = _spawn_on(lap, vps, "say no", dir=directory)
        assert answer["state"] == "refused", directory
    assert vps.call("events", type="task_started", all_rooms=True) == []


def test_tasks_remote_nudge_result_patch_and_logs(pair: Any) -> None:
    """A nudge from the requester reaches the task; its result, patch and logs come back."""
    import subprocess  # noqa: PLC0415

    lap, vps, work = pair
    _allow(vps, lap, work)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    answer = _spawn_on(lap, vps, "wait-message 60\nwrite made.txt remote change\nsay bye")
    _replicated(lap, answer["id"], ("running",))
    lap.call("task.nudge", agent="boss", task=answer["id"], text="go ahead")
    task = _replicated(lap, answer["id"], ("completed",))
    assert "got: go ahead" in task["result"]
    assert "made.txt" in task["diff_stat"]
    patch = lap.call("task.patch", task=answer["id"])["patch"]
    assert "+remote change" in patch
    with Client.open(lap.settings.socket_path) as client:
        text = "".join(p["text"] for p in client.stream("task.logs", {"task": answer["id"]}))
    assert "got: go ahead" in text and "wrote made.txt" in text


def test_tasks_remote_stop_and_kill(pair: Any) -> None:
    """The requester stops one task and kills another on the other device."""
    lap, vps, work = pair
    _allow(vps, lap, work)
    one = _spawn_on(lap, vps, "hang")
    two = _spawn_on(lap, vps, "ignore-term\nhang")
    lap.call("task.stop", agent="boss", task=one["id"])
    lap.call("task.kill", agent="boss", task=two["id"])
    assert _replicated(lap, one["id"], ("stopped",))["state"] == "stopped"
    assert _replicated(lap, two["id"], ("killed",))["state"] == "killed"
    stopper = vps.call("events", type="task_interrupted", all_rooms=True)[0]["data"]["by"]
    assert stopper.startswith("boss:")


def test_tasks_remote_daemon_restart_mid_task(pair: Any) -> None:
    """The runner's daemon restarts mid-task: it re-attaches and the requester sees the end."""
    lap, vps, work = pair
    _allow(vps, lap, work)
    after_restart = gate(work)
    answer = _spawn_on(lap, vps, f"wait-gate {after_restart}\nsay survived")
    _replicated(lap, answer["id"], ("running",))
    vps.kill(signal.SIGKILL)
    vps.start()
    release(after_restart)
    task = _replicated(lap, answer["id"], ("completed",))
    assert "survived" in task["result"]


def test_tasks_remote_limits_and_unknown_device(pair: Any) -> None:
    """The per-device limit holds across the channel; an unknown device is an error."""
    lap, vps, work = pair
    _allow(vps, lap, work, "max_tasks = 1\n")
    first = _spawn_on(lap, vps, "hang")
    second = _spawn_on(lap, vps, "say x")
    assert second["state"] == "refused" and "its limit" in second["reason"]
    lap.call("task.kill", agent="boss", task=first["id"])
    with pytest.raises(NotFound):
        lap.call("spawn", agent="boss", harness="cmd", text="x", on="ZZZZ")
