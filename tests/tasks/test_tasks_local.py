"""Delegation on one device: spawn, results, refusals, nudge, stop, kill, limits, restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from cluster import Device, Relay
from conftest import HARNESSES, cmd_policy, gate, release, spawn, wait_task, write_policy
from coord_cluster import wait_until


def _git(work: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(work), *args], capture_output=True, text=True, check=True
    ).stdout


def _repo(work: Path) -> None:
    _git(work, "init", "-q")
    _git(work, "config", "user.email", "t@example.com")
    _git(work, "config", "user.name", "t")
    (work / "README").write_text("hello\n")
    (work / "dirty").write_text("before the task\n")
    _git(work, "add", "README")
    _git(work, "commit", "-q", "-m", "start")


def test_tasks_spawn_runs_registers_and_returns_result_and_patch(device: Device, work: Path
                                                                 ) -> None:  # fmt: skip
    """A task runs as a registered agent, edits a file, and its result and patch come back."""
    _repo(work)
    answer = spawn(device, "say working\nwrite new.txt made by the task\nsay done", name="wrk")
    assert answer["state"] == "running"
    assert answer["agent"] == "wrk"
    task = wait_task(device, answer["id"])
    assert task["state"] == "completed", task
    assert task["exit_status"] == 0
    assert "done" in task["result"]
    assert "new.txt" in task["diff_stat"]
    assert "dirty" not in task["diff_stat"]  # there before the task: not its change
    patch = device.call("task.patch", task=answer["id"])["patch"]
    assert "+made by the task" in patch
    assert "before the task" not in patch
    agents = {a["name"]: a for a in device.call("agents", all=True)}
    assert agents["wrk"]["harness"] == "cmd"
    assert agents["wrk"]["cwd"] == str(work.resolve())
    types = [e["type"] for e in device.call("events", where="type LIKE 'task_%'",
                                            all_rooms=True)]  # fmt: skip
    assert types[:3] == ["task_requested", "task_accepted", "task_started"]
    assert types[-1] == "task_ended"


def test_tasks_patch_applies_to_a_clean_checkout(device: Device, work: Path, tmp_path: Path
                                                 ) -> None:  # fmt: skip
    """The patch applies with ``git apply`` to a clean clone of the start commit."""
    _repo(work)
    answer = spawn(device, "write README changed by the task\nwrite sub.txt new")
    wait_task(device, answer["id"])
    patch = device.call("task.patch", task=answer["id"])["patch"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(work), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "apply", "-"], input=patch, text=True, check=True)
    assert (clone / "README").read_text() == "changed by the task\n"
    assert (clone / "sub.txt").read_text() == "new\n"


@pytest.mark.parametrize("harness", HARNESSES)
def test_tasks_builtin_harness_contract(device: Device, harness: str) -> None:
    """Each built-in harness gets its headless command with the task on stdin, no skip flag."""
    text = "say hi from the fake\n$(touch pwned) `id`; --dangerously-skip-permissions"
    answer = spawn(device, text, harness=harness)
    task = wait_task(device, answer["id"])
    assert task["state"] == "completed", task["result"]
    lines = task["result"].splitlines()
    assert f"TASK {json.dumps(text)}" in lines
    assert "FLAGS []" in lines
    assert not (Path(task["dir"]) / "pwned").exists()


def test_tasks_skip_permissions_only_when_policy_says(device: Device, work: Path) -> None:
    """The harness's skip flag is added only with skip_permissions = true for it."""
    write_policy(device, cmd_policy(work, "[harnesses.claude]\nskip_permissions = true\n"))
    claude = wait_task(device, spawn(device, "say x", harness="claude")["id"])
    assert 'FLAGS ["--dangerously-skip-permissions"]' in claude["result"]
    codex = wait_task(device, spawn(device, "say x", harness="codex")["id"])
    assert "FLAGS []" in codex["result"]


def test_tasks_task_text_with_shell_metacharacters_is_one_argument(device: Device, work: Path
                                                                   ) -> None:  # fmt: skip
    """A cmd template's {task} is one argument: metacharacters reach the program verbatim."""
    text = f"say $(touch {work}/a) `touch {work}/b`; touch {work}/c && echo | cat > {work}/d"
    task = wait_task(device, spawn(device, text)["id"])
    assert f"TASK {json.dumps(text)}" in task["result"]
    assert not [p.name for p in work.iterdir()]


def test_tasks_refused_outside_policy_with_reason(device: Device, work: Path, tmp_path: Path
                                                  ) -> None:  # fmt: skip
    """Directories outside the allowlist (.., symlink, absolute) and unlisted harnesses are
    refused, and the requester sees why; nothing runs."""
    (work / "sub").mkdir()
    (work / "link").symlink_to(tmp_path)
    for directory in (str(work / "sub" / ".." / ".."), str(work / "link"), "/etc"):
        answer = spawn(device, "say no", dir=directory)
        assert answer["state"] == "refused", directory
        assert "outside the allowed" in answer["reason"]
    write_policy(device, f'[local]\nharnesses = ["claude"]\ndirs = ["{work}"]\n')
    answer = spawn(device, "say no", harness="pi")
    assert answer["state"] == "refused"
    assert "harness pi is not allowed" in answer["reason"]
    shown = device.call("task.show", task=answer["id"])
    assert shown["state"] == "refused" and "pi" in shown["reason"]
    assert device.call("events", type="task_started", all_rooms=True) == []


def test_tasks_failed_exit_status(device: Device) -> None:
    """A program that exits 3 makes a failed task with exit status 3."""
    task = wait_task(device, spawn(device, "say oops\nexit 3")["id"])
    assert task["state"] == "failed"
    assert task["exit_status"] == 3


def test_tasks_nudge_reaches_the_process(device: Device) -> None:
    """A nudge is a message the task's agent receives while it runs."""
    answer = spawn(device, "say waiting\nwait-message 30\nsay bye")
    wait_task(device, answer["id"], ("running",))
    sent = device.call("task.nudge", agent="boss", task=answer["id"], text="please hurry")
    assert sent["recipients"][0]["address"].startswith(answer["agent"] + ":")
    task = wait_task(device, answer["id"])
    assert "got: please hurry" in task["result"]


def test_tasks_stop_is_graceful_then_forced(device: Device, work: Path) -> None:
    """Stop sends SIGTERM; a program that ignores it is killed after the grace: stopped."""
    write_policy(device, cmd_policy(work, "").replace("[local]", "grace = 0.5\n[local]", 1))
    polite = spawn(device, "hang")
    wait_task(device, polite["id"], ("running",))
    device.call("task.stop", agent="boss", task=polite["id"])
    assert wait_task(device, polite["id"])["state"] == "stopped"
    stubborn = spawn(device, "ignore-term\ngrandchild\nhang")
    grandchild = _grandchild(device, stubborn["id"])
    device.call("task.stop", agent="boss", task=stubborn["id"])
    task = wait_task(device, stubborn["id"])
    assert task["state"] == "stopped"
    wait_until(lambda: not _alive(grandchild), 10, "the grandchild ended with its task")


def _grandchild(device: Device, task: str) -> int:
    """Wait until the task's program said it started a grandchild; return its pid."""

    def look() -> int | None:
        found = re.search(r"^grandchild (\d+)$", device.call("task.show", task=task)["output"]
                          or "", re.M)  # fmt: skip
        return int(found[1]) if found else None

    return wait_until(look, 30, "grandchild started")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_tasks_kill(device: Device) -> None:
    """Kill ends the task's processes at once: killed."""
    answer = spawn(device, "ignore-term\nhang")
    wait_task(device, answer["id"], ("running",))
    device.call("task.kill", agent="boss", task=answer["id"])
    task = wait_task(device, answer["id"])
    assert task["state"] == "killed"
    kinds = [e["data"]["how"] for e in device.call("events", type="task_interrupted",
                                                   all_rooms=True)]  # fmt: skip
    assert kinds == ["kill"]


def test_tasks_max_runtime_stops_a_task(device: Device, work: Path) -> None:
    """A task running past max_runtime is stopped, and the reason says so."""
    write_policy(device, "max_runtime = 1\n" + cmd_policy(work))
    task = wait_task(device, spawn(device, "hang")["id"])
    assert task["state"] == "stopped"
    assert "max_runtime" in task["reason"]


def test_tasks_max_tasks_refuses_beyond_the_limit(device: Device, work: Path) -> None:
    """With max_tasks = 1 a second task is refused while the first runs."""
    write_policy(device, "max_tasks = 1\n" + cmd_policy(work))
    first = spawn(device, "hang")
    second = spawn(device, "say hi")
    assert second["state"] == "refused" and "max_tasks" in second["reason"]
    device.call("task.kill", agent="boss", task=first["id"])
    wait_task(device, first["id"])
    assert spawn(device, "say hi")["state"] == "running"


def test_tasks_no_secret_in_process_list(device: Device, short_home: Path) -> None:
    """The group secret and invite tokens appear in no task process's cmdline or environ."""

    relay = Relay(short_home / "relay").start()
    try:
        device.call("group.create", name="g", relay=relay.url)
        invite = device.call("invite")["invite"]
        _no_secret(device, invite)
    finally:
        relay.kill()


def _no_secret(device: Device, invite: str) -> None:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{device.settings.db_path}?mode=ro", uri=True)
    [(secret,)] = conn.execute("SELECT secret FROM groups").fetchall()
    conn.close()
    answer = spawn(device, "grandchild\nhang")
    _grandchild(device, answer["id"])
    pids = _group_pids(device.call("task.show", task=answer["id"])["pid"])
    assert len(pids) >= 3  # wrapper, the program (sh execs it), its grandchild
    import base64  # noqa: PLC0415

    needles = [secret, secret.hex().encode(), base64.b64encode(secret),
               base64.urlsafe_b64encode(secret).rstrip(b"="), invite.encode()]  # fmt: skip
    for pid in pids:
        for name in ("cmdline", "environ"):
            blob = Path(f"/proc/{pid}/{name}").read_bytes()
            for needle in needles:
                assert needle not in blob, f"{name} of {pid}"
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        keys = {item.split(b"=", 1)[0] for item in environ if item}
        assert {k for k in keys if k.startswith(b"SWITCHBOARD_")} <= {
            b"SWITCHBOARD_HOME", b"SWITCHBOARD_AGENT", b"SWITCHBOARD_TASK",
            b"SWITCHBOARD_HARNESS",
        }  # fmt: skip
    device.call("task.kill", agent="boss", task=answer["id"])


def _group_pids(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def test_tasks_daemon_restart_reattaches(device: Device, work: Path) -> None:
    """A daemon killed mid-task re-attaches when it starts again and reports the end."""
    # The task asks the daemon for its message only after the restart: a CLI call that
    # loses its daemon starts one itself (autostart), which would race the test's own start.
    after_restart = gate(work)
    answer = spawn(device, f"wait-gate {after_restart}\nwait-message 60\nsay finished\nexit 5")
    wait_task(device, answer["id"], ("running",))
    device.kill(signal.SIGKILL)
    device.start()
    release(after_restart)
    assert device.call("task.show", task=answer["id"])["state"] == "running"
    device.call("task.nudge", agent="boss", task=answer["id"], text="go on")
    task = wait_task(device, answer["id"])
    assert task["state"] == "failed" and task["exit_status"] == 5
    assert "finished" in task["result"]


def test_tasks_daemon_restart_stop_after_reattach(device: Device) -> None:
    """A re-attached task can still be stopped."""
    answer = spawn(device, "hang")
    wait_task(device, answer["id"], ("running",))
    device.kill(signal.SIGKILL)
    device.start()
    wait_until(lambda: _stopped(device, answer["id"]), 30, "stop accepted after re-attach")
    assert wait_task(device, answer["id"])["state"] == "stopped"


def _stopped(device: Device, task: str) -> bool:
    try:
        device.call("task.stop", agent="boss", task=task)
    except Exception:
        return False
    return True


def test_tasks_daemon_restart_reports_lost(device: Device) -> None:
    """A task whose process vanished while the daemon was down without a status is lost."""
    answer = spawn(device, "hang")
    task = wait_task(device, answer["id"], ("running",))
    device.kill(signal.SIGKILL)
    os.killpg(task["pid"], signal.SIGKILL)
    wait_until(lambda: not _alive(task["pid"]), 10, "the task's process ended")
    device.start()
    task = wait_task(device, answer["id"])
    assert task["state"] == "lost", task
    assert "daemon was down" in task["reason"]


def test_tasks_program_missing_fails_with_reason(device: Device, work: Path) -> None:
    """A harness program that is not installed fails the task at once, saying so."""
    write_policy(device, f'[local]\nharnesses = ["cmd"]\ndirs = ["{work}"]\n'
                         '[harnesses.cmd]\nargs = ["no-such-program-here", "{task}"]\n'
                         'task = "arg"\n')  # fmt: skip
    answer = spawn(device, "say x")
    assert answer["state"] == "failed"
    assert "not found" in answer["reason"]
    assert device.call("task.show", task=answer["id"])["state"] == "failed"


def test_tasks_quick_exit_is_reported_in_order(device: Device) -> None:
    """A program that ends at once still gets task_started before task_ended."""
    answers = [spawn(device, "exit 0") for _ in range(3)]  # max_tasks is 4
    for answer in answers:
        assert wait_task(device, answer["id"])["state"] == "completed"
