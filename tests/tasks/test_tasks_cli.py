"""Delegation through the real ``switchboard`` command: spawn, tasks, task ..., spawn policy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cluster import Device
from conftest import gate, release, spawn, wait_task
from coord_cluster import wait_until


def test_tasks_cli_spawn_follows_to_the_end(device: Device, work: Path) -> None:
    """``spawn -- TEXT`` prints the task id, follows it, and exits 0 when it completes."""
    done = device.cli("spawn", "--harness", "cmd", "--dir", str(work), "--name", "cli1",
                      "--", "say", "hello", "there", agent="boss")  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].startswith("task ") and "running as cli1" in lines[0]
    assert "completed (exit status 0)" in done.stdout
    assert "hello there" in done.stdout
    task_id = lines[0].split()[1]
    listed = device.cli_json("tasks", agent="boss")
    assert [t["id"] for t in listed] == [task_id]
    assert listed[0]["state"] == "completed" and listed[0]["agent"].startswith("cli1:")
    shown = device.cli("task", "show", task_id[:5], agent="boss").stdout
    assert "state      completed" in shown and "hello there" in shown
    logs = device.cli("task", "logs", task_id, agent="boss").stdout
    assert "hello there" in logs


def test_tasks_cli_spawn_exit_status_for_failed_and_refused(device: Device, work: Path) -> None:
    """A failed or refused task makes ``spawn`` exit 1, with the reason."""
    failed = device.cli("spawn", "--harness", "cmd", "--dir", str(work), "--", "exit 4",
                        agent="boss", check=False)  # fmt: skip
    assert failed.returncode == 1 and "failed (exit status 4)" in failed.stdout
    refused = device.cli("spawn", "--harness", "cmd", "--dir", "/", "--", "say x",
                         agent="boss", check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "refused:" in refused.stdout and "outside the allowed" in refused.stdout


def test_tasks_cli_spawn_needs_text_after_dashes(device: Device) -> None:
    """``spawn`` without ``-- TEXT`` is a usage error."""
    done = device.cli("spawn", "--harness", "cmd", check=False)
    assert done.returncode == 2 and "no task text" in done.stderr


def test_tasks_cli_detach_logs_follow_nudge_stop(device: Device, work: Path) -> None:
    """``--detach`` returns at once; logs --follow streams until the end; nudge and stop work."""
    out = device.cli("spawn", "--detach", "--harness", "cmd", "--dir", str(work), "--",
                     "wait-message 30\nhang", agent="boss").stdout  # fmt: skip
    task_id = out.split()[1]
    wait_task(device, task_id, ("running",))
    nudged = device.cli("task", "nudge", task_id, "--", "stop", "waiting", agent="boss")
    assert "delivered" in nudged.stdout or "queued" in nudged.stdout
    wait_until(lambda: "got: stop waiting" in (device.call("task.show", task=task_id)["output"]
                                               or ""), 30, "the nudge arrived")  # fmt: skip
    follower = subprocess.Popen(
        [*_cli(device), "task", "logs", "--follow", task_id], stdout=subprocess.PIPE, text=True
    )
    device.cli("task", "stop", task_id, agent="boss")
    streamed, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0
    assert "got: stop waiting" in streamed
    assert wait_task(device, task_id)["state"] == "stopped"


def _cli(device: Device) -> list[str]:
    import sys  # noqa: PLC0415

    return [sys.executable, "-m", "switchboard", "--home", str(device.home)]


def test_tasks_cli_policy_allow_deny(device: Device, work: Path) -> None:
    """``spawn allow|deny|policy`` edit and show spawn.toml; a new device needs --dir."""
    shown = device.cli_json("spawn", "policy")
    assert shown["devices"] == []
    unknown = device.cli("spawn", "allow", "ZZZZ", "--dir", str(work), check=False)
    assert unknown.returncode == 1 and "unknown device" in unknown.stderr
    device.cli("spawn", "deny", "local")
    assert device.cli_json("spawn", "policy")["local"]["allowed"] is False
    refused = spawn(device, "say x")
    assert refused["state"] == "refused" and "may not spawn" in refused["reason"]
    device.cli("spawn", "allow", "local", "--harness", "cmd", "--dir", str(work))
    policy = device.cli_json("spawn", "policy")
    assert policy["local"]["allowed"] is True and str(work) in policy["local"]["dirs"]
    assert spawn(device, "say x")["state"] == "running"
    text = (device.home / "spawn.toml").read_text()
    assert "allowed = true" in text
    assert oct((device.home / "spawn.toml").stat().st_mode & 0o777) == "0o600"


def test_tasks_cli_terminal_runs_in_tmux(device: Device, work: Path, short_home: Path) -> None:
    """``--terminal`` opens a tmux window running the interactive command; the task text is
    its one argument; output is captured and the end is reported."""
    socket_dir = short_home / "tmux"
    socket_dir.mkdir()
    # A private tmux server for the test (TMUX_TMPDIR), so no user session is touched.
    device.kill()
    device.env["TMUX_TMPDIR"] = str(socket_dir)
    device.start()
    try:
        running = gate(socket_dir)
        text = f"say in tmux\nwait-gate {running}"
        answer = spawn(device, text, harness="claude", terminal=True)
        assert answer["state"] == "running", answer
        release(running)
        task = wait_task(device, answer["id"])
        assert task["state"] == "completed", task
        assert task["window"].startswith("switchboard:")
        assert "TASK " + json.dumps(text) in task["result"]
    finally:
        subprocess.run(["tmux", "kill-server"], env={**device.env}, check=False,
                       capture_output=True)  # fmt: skip
