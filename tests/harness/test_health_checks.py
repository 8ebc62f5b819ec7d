"""Health checks register nobody: an MCP server only listed, a SessionEnd of a session never seen,
and an agent that never did anything leaves listings once it is gone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness_kit import PY, Device, Session, events_of, mcp_env, timeout
from mcp_kit import mcp_session, run

HARNESS_BIN = Path(__file__).resolve().parents[1] / "live" / "harnesses" / "node_modules" / ".bin"


def _names(device: Device, **params: object) -> set[str]:
    return {a["name"] for a in device.call("agents", **params)}


def test_mcp_server_initialised_and_listed_registers_nobody(device: Device) -> None:
    """initialize and tools/list through the official client (a harness's health check) leave no
    agent and no event behind."""
    session = Session(device, "claude", "unused")

    async def body() -> None:
        async with mcp_session(mcp_env(session)) as client:
            assert (await client.list_tools()).tools

    for _ in range(3):
        run(body)
    assert _names(device, all=True) == set()
    assert events_of(device, "agent_registered") == []


def test_session_end_of_a_session_never_seen_registers_nobody(device: Device) -> None:
    """A SessionEnd for a session that never started (``claude mcp list`` fires one) records
    nothing; a SessionEnd of a known session still takes its agent offline."""
    assert Session(device, "claude", "health-1").hook("SessionEnd").out == {}
    assert _names(device, all=True) == set()
    assert events_of(device, "session_stopped") == []
    luna = Session(device, "claude", "s-known", agent="luna")
    luna.hook("SessionStart")
    luna.hook("SessionEnd")
    assert events_of(device, "session_stopped")[-1]["agent"] == f"luna:{device.short}"


def test_picked_agent_that_never_did_anything_leaves_listings_once_gone(device: Device) -> None:
    """An agent under a picked name whose session started and ended without a turn is no longer
    listed (``--all`` still shows it); one that had a turn, or a chosen name, stays listed."""
    idle = Session(device, "claude", "s-idle")
    idle.hook("SessionStart")
    [picked] = _names(device)
    worked = Session(device, "claude", "s-work")
    worked.hook("SessionStart")
    [other] = _names(device) - {picked}
    worked.hook("UserPromptSubmit")
    named = Session(device, "claude", "s-named", agent="vera")
    named.hook("SessionStart")
    for session in (idle, worked, named):
        session.hook("SessionEnd")
    assert _names(device) == {other, "vera"}
    assert _names(device, all=True) == {picked, other, "vera"}
    statuses = {a["name"]: a["status"] for a in device.call("agents", all=True)}
    assert set(statuses.values()) == {"offline"}
    idle.hook("SessionStart", source="resume")
    assert picked in _names(device)


def test_real_claude_mcp_list_adds_no_agent(device: Device, short_dir: Path) -> None:
    """The pinned Claude Code's ``claude mcp list``, run three times after ``switchboard install
    claude`` in a throwaway home, shows our server connected and adds no agent."""
    home = short_dir / "home"
    home.mkdir()
    bin_dir = short_dir / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "switchboard"
    launcher.write_text(f'#!/bin/sh\nexec {PY} -m switchboard "$@"\n')
    launcher.chmod(0o755)
    env = {
        **device.env,
        "HOME": str(home),
        "PATH": os.pathsep.join([str(bin_dir), str(HARNESS_BIN), "/usr/bin", "/bin"]),
        "DISABLE_AUTOUPDATER": "1",
    }
    env.pop("SWITCHBOARD_AGENT", None)
    env.pop("SWITCHBOARD_HARNESS_PID", None)
    installed = subprocess.run(
        [PY, "-m", "switchboard", "install", "claude"], env=env, capture_output=True, text=True,
        timeout=timeout(60), check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    claude = shutil.which("claude", path=env["PATH"])
    assert claude
    for _ in range(3):
        listed = subprocess.run(
            [claude, "mcp", "list"], env=env, capture_output=True, text=True, cwd=short_dir,
            timeout=timeout(120), check=False,
        )  # fmt: skip
        assert "switchboard" in listed.stdout and "Connected" in listed.stdout, listed.stdout
    assert _names(device, all=True) == set()
    assert events_of(device, "agent_registered") == []
