"""The real Claude Code spawned headless on another device, against the loopback stand-in.

Device ``lap`` asks device ``vps`` (through a relay) to run Claude Code in a git directory. The
stand-in answers its first request with one shell tool call that writes a file; Claude Code
asks its permission-prompt tool (our MCP server) before running it, so the task blocks and
the prompt shows on ``lap``, which approves it. A nudge sent from ``lap`` while the stand-in
holds the tool call must reach the model's next request (the PostToolUse hook of the
installed harness), and the result and the patch must come back to ``lap``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standin as standin_module
from drivers import Claude
from live_kit import Device, Home, timeout
from standin import Standin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordination"))

from cluster import Relay
from coord_cluster import wait_until

COMMAND = "echo hi > made.txt"
NUDGE = "nudge-from-lap: keep the file short"


@pytest.fixture
def two(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Device, Device, Home, Standin, Any]]:
    """lap and vps in one group; vps's daemon runs as a throwaway user whose Claude Code
    points at the stand-in, with Switchboard installed, and a policy allowing lap."""
    monkeypatch.setattr(standin_module, "COMMAND", COMMAND)
    root = Path(tempfile.mkdtemp(prefix="sbs-", dir="/tmp"))
    relay = Relay(root / "relay")
    lap, vps = Device(root / "lap", "lap"), Device(root / "vps", "vps")
    nudges: dict[str, Any] = {}

    def before(step: str, body: Any) -> None:
        if step == "tool" and "task" in nudges and "sent" not in nudges:
            nudges["sent"] = lap.call("task.nudge", agent="boss", task=nudges["task"],
                                      text=NUDGE)  # fmt: skip

    stand = Standin("anthropic", before=before)
    try:
        relay.start()
        vps.home.mkdir(parents=True)
        home = Home(root / "home", vps)
        Claude().prepare(home, stand.url)
        settings = home.path(".claude", "settings.json")
        mine = json.loads(settings.read_text())
        mine["permissions"] = {}  # the shell command must ask
        settings.write_text(json.dumps(mine))
        vps.env.update(home.env)
        vps.env.update(Claude().env(home, stand.url))
        for dev in (lap, vps):
            dev.start()
            dev.call("init", name=dev.name)
        home.switchboard("install", "claude", "--json")
        created = lap.call("group.create", name="live", relay=relay.url)
        nudges["invite"] = created["invite"]
        vps.call("join", invite=created["invite"])
        for dev in (lap, vps):
            dev.call("link.sync", timeout=timeout(30))
        subprocess.run(["git", "init", "-q", str(home.work)], check=True)
        lap_id = lap.call("status")["device"]["id"]
        policy = vps.home / "spawn.toml"
        policy.write_text(f'[devices.{lap_id}]\nharnesses = ["claude"]\ndirs = ["{home.work}"]\n')
        policy.chmod(0o600)
        yield lap, vps, home, stand, nudges
    finally:
        stand.close()
        for dev in (lap, vps):
            dev.kill(signal.SIGTERM)
        relay.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_live_claude_spawned_on_another_device(two: Any) -> None:
    """Spawned headless on vps, Claude Code registers, its prompt is approved from lap, the
    nudge reaches its model's next request, and its result and patch come back to lap."""
    lap, vps, home, stand, nudges = two
    answer = lap.call("spawn", agent="boss", harness="claude", on=vps.short,
                      dir=str(home.work), text="Write hi into made.txt.")  # fmt: skip
    assert answer["state"] == "running", answer
    nudges["task"] = answer["id"]
    agent = answer["agent"]
    wait_until(lambda: any(a["name"] == agent for a in lap.call("agents", all=True)), 60,
               "the spawned agent is listed on lap")  # fmt: skip

    def prompt() -> dict[str, Any] | None:
        pending = lap.call("approvals")
        return pending[0] if pending else None

    asked = wait_until(prompt, 120, "the permission prompt shows on lap")
    assert asked["tool"] == "Bash" and "made.txt" in asked["detail"], asked
    _no_secret_in(vps, vps.call("task.show", task=answer["id"])["pid"], nudges["invite"])
    lap.call("prompt.answer", agent="boss", prompt=asked["prompt"], answer="allow")

    def ended() -> dict[str, Any] | None:
        task: dict[str, Any] = lap.call("task.show", task=answer["id"])
        return task if task["state"] in ("completed", "failed", "stopped", "killed") else None

    task = wait_until(ended, 180, "the task ended, as lap sees it")
    assert task["state"] == "completed", (task, vps.call("task.show", task=answer["id"]))
    assert standin_module.FINAL in task["result"]
    assert "made.txt" in task["diff_stat"]
    patch = lap.call("task.patch", task=answer["id"])["patch"]
    assert "+hi" in patch
    conversation = stand.conversation()
    assert "sent" in nudges
    assert any(NUDGE in r.text for r in conversation[1:]), [r.step for r in conversation]
    assert not any(NUDGE in r.text for r in conversation[:1])


def _no_secret_in(vps: Device, pgid: int, invite: str) -> None:
    """No process of the task (Claude Code, its MCP server, the shell it runs) holds the group
    secret or the invite in its command line or environment."""
    import base64  # noqa: PLC0415
    import os  # noqa: PLC0415
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(f"file:{vps.settings.db_path}?mode=ro", uri=True)
    [(secret,)] = conn.execute("SELECT secret FROM groups").fetchall()
    conn.close()
    needles = [secret, secret.hex().encode(), base64.urlsafe_b64encode(secret).rstrip(b"="),
               base64.b64encode(secret), invite.encode()]  # fmt: skip
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(entry)
    assert len(pids) >= 3, pids  # the wrapper, Claude Code, our MCP server
    for pid in pids:
        for name in ("cmdline", "environ"):
            try:
                blob = Path(f"/proc/{pid}/{name}").read_bytes()
            except OSError:
                continue
            assert not [n for n in needles if n in blob], f"{name} of {pid}"
